r"""Measured joules per inference of a model on its deployment device, next to the estimate.

On an NVIDIA GPU the counter is NVML's total energy (``nvmlDeviceGetTotalEnergyConsumption``, mJ);
on a CPU it is RAPL. The method is :func:`torchslim.measure.power.measure_energy`:

1. warm up (`warmup` batches, then ``torch.cuda.synchronize()``);
2. read the counter over an idle window of `idle_seconds`: ``P_idle = E_idle / t_idle``;
3. run batches of `example_input` (each followed by a synchronize) for at least `seconds` and at
   least `min_batches` batches: ``E_loop`` over ``t_loop``;
4. ``J/inference = (E_loop - P_idle * t_loop) / (batches * batch_size)``.

The idle power is reported (``idle_watts``) beside the result, so a reader can tell how much of the
loop's energy was the device's floor. The analytical estimate of the same model at one sample
(:func:`torchslim.measure.energy.estimate_energy`) comes with it: the two are different quantities
(circuit energy on an accelerator profile vs joules the GPU board draws), shown side by side so
the estimate can be checked against a measurement.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
from torch import nn

from torchslim.measure._util import batch_size_of, call_model, eval_mode, to_device
from torchslim.measure.energy import DEFAULT_PROFILE, estimate_energy
from torchslim.measure.power import EnergyMeasurement, NotMeasurable, measure_energy


@dataclasses.dataclass(frozen=True)
class InferenceEnergy:
    """A measured J/inference (or why not) next to the estimate of the same model, at one batch size."""

    measured: EnergyMeasurement | NotMeasurable
    estimate_uj: float
    estimate_source: str
    batch_size: int
    device: str

    @property
    def measured_uj(self) -> float | None:
        return self.measured.uj_per_inference if isinstance(self.measured, EnergyMeasurement) else None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "device": self.device,
            "batch_size": self.batch_size,
            "estimate_uj": self.estimate_uj,
            "estimate_source": self.estimate_source,
            "measured_uj": self.measured_uj,
        }
        if isinstance(self.measured, EnergyMeasurement):
            out["measured"] = self.measured.to_dict()
            out["measured_label"] = self.measured.label
        else:
            out["not_measurable"] = self.measured.reason
        return out


def _device_problem(device: str) -> str | None:
    if device.startswith("cuda") and not torch.cuda.is_available():
        return "CUDA is not available here (no NVIDIA GPU or no CUDA build of torch)."
    return None


def measure_inference_energy(
    model: nn.Module,
    example_input: Any,
    *,
    device: str = "cuda",
    seconds: float = 10.0,
    idle_seconds: float = 5.0,
    min_batches: int = 100,
    warmup: int = 10,
    profile: str = DEFAULT_PROFILE,
    counter: Any = None,
) -> InferenceEnergy:
    """Measured J/inference of `model` on `device` at the batch of `example_input`, and the estimate.

    The model is copied to `device` (the caller's model is not moved or changed). Without a counter
    (or without CUDA for a ``cuda`` device) ``measured`` is a :class:`NotMeasurable` with the reason;
    no number is invented. `counter` replaces the NVML/RAPL counter (tests).
    """
    estimate = estimate_energy(model, example_input, profile=profile)
    batch = batch_size_of(example_input)
    problem = _device_problem(device) if counter is None else None
    if problem is not None:
        return InferenceEnergy(NotMeasurable(problem), estimate.total_uj, estimate.source, batch, device)
    work = copy.deepcopy(model).to(device)
    inputs = to_device(example_input, torch.device(device))

    def run_batch() -> None:
        with torch.no_grad():
            call_model(work, inputs)

    with eval_mode(work):
        measured = measure_energy(
            run_batch,
            seconds=seconds,
            idle_seconds=idle_seconds,
            device=device,
            items_per_call=batch,
            warmup=warmup,
            min_calls=min_batches,
            counter=counter,
        )
    return InferenceEnergy(measured, estimate.total_uj, estimate.source, batch, device)


__all__ = ["InferenceEnergy", "measure_inference_energy"]
