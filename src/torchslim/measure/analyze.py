"""``analyze``: every measurement of one model in one call, as a :class:`ModelStats`."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from torch import nn

from torchslim.measure._util import display_name, layer_weight_bits, with_batch_size
from torchslim.measure.accuracy import evaluate
from torchslim.measure.energy import (
    DEFAULT_PROFILE,
    EnergyEstimate,
    EnergyProfile,
    LayerCost,
    estimate_from_layers,
    layer_costs_and_macs,
    load_profile,
)
from torchslim.measure.latency import LatencyStats, RuntimeTimer, measure_latency
from torchslim.measure.macs import MacCount
from torchslim.measure.params import LayerParams, count_layer_parameters, count_parameters
from torchslim.measure.size import directory_bytes
from torchslim.measure.stats import LayerStats, ModelStats


def _one_sample(example_input: Any) -> Any:
    try:
        return with_batch_size(example_input, 1)
    except Exception:  # noqa: BLE001 - inputs without a batch dimension are used as given
        return example_input


def _layer_stats(
    model: nn.Module,
    layer_params: dict[str, LayerParams],
    macs: MacCount,
    costs: list[LayerCost],
    energy: EnergyEstimate,
) -> list[LayerStats]:
    """One :class:`LayerStats` per module that owns parameters or does MACs, in model order."""
    energy_by_layer = {e.name: e.total_uj for e in energy.per_layer}
    bits_by_layer = {c.name: c.weight_bits for c in costs}
    layers: list[LayerStats] = []
    for qualified, module in model.named_modules():
        name = display_name(qualified)
        counted = layer_params.get(name)
        layer_macs = macs.per_layer.get(name, 0)
        if counted is None and not layer_macs:
            continue
        bits = bits_by_layer.get(name)
        if bits is None:
            bits = layer_weight_bits(module)
        layers.append(
            LayerStats(
                name=name,
                type=type(module).__name__,
                params=counted.params if counted else 0,
                nonzero_params=counted.nonzero if counted else 0,
                macs=int(layer_macs),
                weight_bits=bits,
                sparsity=counted.sparsity if counted else 0.0,
                energy_uj=energy_by_layer.get(name),
                width=_width(module),
            )
        )
    return layers


def _width(module: nn.Module) -> int | None:
    """Output channels / features of a conv or linear layer (compressed forms keep the attribute), else None."""
    for attribute in ("out_channels", "out_features", "nf"):  # nf: transformers' Conv1D
        value = getattr(module, attribute, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def analyze(
    model: nn.Module,
    *,
    example_input: Any,
    loader: Iterable[Any] | None = None,
    artifact_dir: str | Path | None = None,
    runtime_timer: RuntimeTimer | None = None,
    latency_batch_size: int = 1,
    threads: int | None = None,
    repeats: int = 20,
    warmup: int = 3,
    max_batches: int | None = None,
    profile: str | Path | EnergyProfile = DEFAULT_PROFILE,
    energy_seconds: float = 2.0,
    powercap_root: str | Path | None = None,
) -> ModelStats:
    # long: fourteen keyword options and their documentation; each measurement is one call
    """Measure `model`: parameters, nonzeros, MACs and estimated energy per inference (on the first
    sample of `example_input`), latency at `latency_batch_size` and `threads`, accuracy/loss on
    `loader` (when given, up to `max_batches`), bytes on disk of `artifact_dir` (when given; None
    otherwise, for the caller that saves the artifact to fill in).

    With `runtime_timer` (a model deployed to a runtime by :mod:`torchslim.deploy`), ``latency_ms``
    is that runtime's latency at the same batch size and thread count, and ``latency_eager_ms``
    PyTorch eager's; otherwise both are PyTorch eager. The model is not changed: no mode, parameter,
    buffer or hook is left different.

    Energy: ``energy_uj`` is always the analytical estimate (``energy_source`` names the table).
    Where a hardware counter can be read (RAPL for the CPU, NVML for an NVIDIA GPU), a timed loop of
    `energy_seconds` (minus idle power measured just before) gives ``energy_measured_uj`` per
    inference and ``energy_measured`` says "measured (rapl)" / "measured (nvml)"; otherwise
    ``energy_measured`` is "not measurable here: <reason>" and no number is invented.
    """
    prof = load_profile(profile)
    layer_params = count_layer_parameters(model)
    costs, macs = layer_costs_and_macs(model, _one_sample(example_input))
    energy = estimate_from_layers(costs, prof, batch_size=1)
    layers = _layer_stats(model, layer_params, macs, costs, energy)

    eager = measure_latency(
        model, example_input, batch_size=latency_batch_size, warmup=warmup, repeats=repeats, threads=threads
    )
    latency: LatencyStats = eager
    if runtime_timer is not None:
        latency = runtime_timer(batch_size=latency_batch_size, warmup=warmup, repeats=repeats, threads=eager.threads)

    measured_uj, measured_label = _measured_energy(
        model, example_input, seconds=energy_seconds, powercap_root=powercap_root, threads=eager.threads
    )

    accuracy = loss = None
    accuracy_samples: int | None = None
    if loader is not None:
        result = evaluate(model, loader, max_batches=max_batches)
        accuracy, loss, accuracy_samples = result.accuracy, result.loss, result.samples

    return ModelStats(
        params=count_parameters(model),
        nonzero_params=sum(p.nonzero for p in layer_params.values()),
        macs=int(macs.total),
        bytes=directory_bytes(artifact_dir) if artifact_dir is not None else None,
        latency_ms=latency.median_ms,
        latency_runtime=latency.runtime,
        latency_eager_ms=eager.median_ms,
        batch_size=eager.batch_size,
        threads=eager.threads,
        accuracy=accuracy,
        accuracy_samples=accuracy_samples,
        loss=loss,
        energy_uj=energy.total_uj,
        energy_source=energy.source,
        layers=layers,
        energy_measured_uj=measured_uj,
        energy_measured=measured_label,
    )


def _measured_energy(
    model: nn.Module, example_input: Any, *, seconds: float, powercap_root: str | Path | None, threads: int | None
) -> tuple[float | None, str]:
    """Measured µJ per inference and its label, or (None, "not measurable here: why")."""
    import torch

    from torchslim.measure._util import batch_size_of, call_model, eval_mode, model_device, num_threads, to_device
    from torchslim.measure.power import DEFAULT_POWERCAP_ROOT, NotMeasurable, measure_energy

    device = model_device(model)
    inputs = to_device(example_input, device)

    def step() -> None:
        with torch.no_grad():
            call_model(model, inputs)

    with eval_mode(model), num_threads(threads):
        result = measure_energy(
            step,
            seconds=seconds,
            device=str(device),
            items_per_call=batch_size_of(inputs),
            powercap_root=powercap_root or DEFAULT_POWERCAP_ROOT,
        )
    if isinstance(result, NotMeasurable):
        return None, f"not measurable here: {result.reason}"
    return result.uj_per_inference, result.label
