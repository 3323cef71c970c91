r"""Analytical energy per inference from a cited per-operation cost table (an *estimate*).

Model
-----
For every layer that does multiply-accumulates (MACs counted by :func:`count_macs`), with
``w`` = weight bits, ``a`` = activation bits, ``B`` = batch size of the forward pass::

    class      = precision class of max(w, a):  <=1 binary | <=2 int2 | <=4 int4 | <=8 int8
                                                 | <=16 fp16 | else fp32
    density    = nonzero_weights / weights   if the layer says sparse_kernel=True, else 1
    E_compute  = MACs * density * (mult_pj[class] + add_pj[class])
    W_bytes    = nonzero_weights * (w + index_bits) / 8   if sparse_kernel, else weights * w / 8
    E_weights  = W_bytes * level_pj_per_32bit / 4,  level = SRAM if the layer's weights still fit
                 the on-chip weight budget (filled greedily in model order), else DRAM
    A_bytes    = (activation_inputs + activation_outputs) * a / 8
    E_acts     = A_bytes * level_pj_per_32bit / 4,  level = SRAM if A_bytes <= activation budget, else DRAM
    E_layer    = (E_compute + E_weights + E_acts) / B            [pJ per inference; 1 pJ = 1e-6 uJ]

and the estimate is the sum over layers. Memory costs are per 32-bit word, so a byte costs a quarter
of a word (sub-word values are packed).

Assumptions (stated, not hidden)
--------------------------------
* A MAC runs at the precision of its wider operand: int8 weights with fp32 activations cost an fp32
  MAC (weight-only quantization saves memory traffic, not arithmetic); int8 x int8 costs an int8
  multiply plus an **int32 accumulate** (0.2 + 0.1 pJ at 45 nm). That choice, rather than the 8-bit
  add (0.03 pJ), makes the int8/fp32 compute ratio 4.6 / 0.3 = 15.3x (it would be 20x with 0.03).
* Zero weights are skipped only where the deployed format skips them: structured pruning already
  removed them (fewer MACs, smaller tensors); unstructured zeros count as dense work unless the layer
  sets ``sparse_kernel=True`` (then only nonzeros are multiplied and stored, each with an index).
* Every weight is read once per forward pass from its storage level (further reuse comes from
  registers and is not charged); weights resident in SRAM stay there across inferences, so loading
  them is amortised away; weights that do not fit are streamed from DRAM on every forward pass.
* Each layer reads its input activations once and writes its outputs once (writes cost the same as
  reads); element-wise layers (ReLU, pooling, normalisation) are assumed fused and not charged,
  nor are parameters of layers without MACs (BatchNorm folds into the convolution; an embedding
  lookup reads only the rows it gathers). Biases are counted at the weight precision.
* Work done directly in a non-leaf module's ``forward`` (e.g. ``q @ k.T``) is charged with that
  module's input and output as its activation traffic, an approximation.

Per-layer precision of a compressed layer comes from the layer contract,
:meth:`torchslim.core.layer.CompressedLayer.storage_bits` (``weight``; ``activation``, None when its
input stays float); otherwise it is inferred from the dtypes (float32 -> 32, float16/bfloat16 -> 16,
int8 -> 8; activations from the layer's input dtype). bfloat16 is charged as fp16 and float64 as
fp32 (the tables have no separate figures).

Sparse kernels: a module that a sparse runtime would run on its nonzeros only is marked with
:func:`torchslim.core.layer.mark_sparse_kernel` (``sparse_kernel = True``); unstructured pruning
marks its masked layers False. It is the one module attribute this formula reads, declared in the
core layer contract (:func:`~torchslim.core.layer.uses_sparse_kernel`).

Profiles
--------
An :class:`~torchslim.measure.energy_profile.EnergyProfile` is a frozen table of these constants,
loadable from YAML/JSON (unknown keys rejected) or built in Python. Shipped profiles
(``src/torchslim/measure/profiles/*.yaml``, each constant with its source in the file):

* ``horowitz-45nm`` (default): Horowitz, "Computing's energy problem (and what we can do about it)",
  ISSCC 2014, 45 nm: fp32 mult 3.7 pJ + add 0.9; fp16 mult 1.1 + add 0.4; int8 mult 0.2, int8 add
  0.03, int32 add 0.1; 32-bit SRAM read (8 KB) 5 pJ; 32-bit DRAM read 640 pJ. On-chip weight budget
  8 MiB (EIE, Han et al., ISCA 2016: 64 PEs x 128 KB). int4/int2/binary derived (multiplier energy
  ~ bits^2; popcount ~ one adder bit).
* ``jouppi-7nm``: the 7 nm column of Jouppi et al., "Ten Lessons From Three Generations Shaped
  Google's TPUv4i", ISCA 2021, Table 2 (a TPUv4i-class datacenter accelerator with HBM2).

These are circuit energies of an accelerator doing exactly this work, not the joules a CPU or GPU
draws; :func:`torchslim.measure.measure_energy` reads real counters where the machine has them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchslim.core.errors import ConfigError
from torchslim.core.layer import SPARSE_KERNEL_ATTRIBUTE, uses_sparse_kernel
from torchslim.measure._util import (
    batch_size_of,
    dtype_bits,
    module_by_display_name,
    storage_bits,
    weight_dtype_bits,
)
from torchslim.measure.energy_profile import (
    COMPUTE_CLASSES,
    DEFAULT_PROFILE,
    EnergyProfile,
    MacEnergy,
    available_profiles,
    compute_class,
    load_profile,
)
from torchslim.measure.macs import MacCount, trace_macs
from torchslim.measure.params import count_layer_parameters

# --------------------------------------------------------------------------------------------------
# The formula


@dataclasses.dataclass(frozen=True)
class LayerCost:
    """What one layer does in one forward pass (of `batch_size` samples), the input of the formula."""

    name: str
    macs: int
    weight_elements: int
    weight_nonzero: int
    weight_bits: int
    activation_bits: int
    activations_in: int
    activations_out: int
    sparse_kernel: bool = False

    def __post_init__(self) -> None:
        for field in ("macs", "weight_elements", "weight_nonzero", "activations_in", "activations_out"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"LayerCost({self.name!r}).{field}={value!r} must be an integer >= 0.")
        if self.weight_nonzero > self.weight_elements:
            raise ConfigError(
                f"LayerCost({self.name!r}): weight_nonzero={self.weight_nonzero} exceeds "
                f"weight_elements={self.weight_elements}."
            )
        compute_class(self.weight_bits, self.activation_bits)  # validates the bit widths


@dataclasses.dataclass(frozen=True)
class LayerEnergy:
    """Estimated energy of one layer per inference, in microjoules."""

    name: str
    macs: int
    weight_bits: int
    activation_bits: int
    compute_uj: float
    memory_uj: float
    total_uj: float
    compute_class: str = ""
    weight_storage: str = "none"  # "sram", "dram" or "none"
    weight_bytes: float = 0.0
    activation_bytes: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class EnergyEstimate:
    """Estimated energy per inference (µJ), its compute/memory split and per-layer breakdown."""

    total_uj: float
    compute_uj: float
    memory_uj: float
    per_layer: list[LayerEnergy]
    source: str
    profile: str = DEFAULT_PROFILE
    batch_size: int = 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_PJ_TO_UJ = 1e-6


def _layer_energy(
    layer: LayerCost, prof: EnergyProfile, *, sram_left: float, batch_size: int
) -> tuple[LayerEnergy, float]:
    """One layer's energy per inference, and the on-chip weight budget left after it."""
    sram_word = prof.sram_pj_per_32bit / 4.0  # pJ per byte
    dram_word = prof.dram_pj_per_32bit / 4.0
    cls = compute_class(layer.weight_bits, layer.activation_bits)
    if layer.sparse_kernel and layer.weight_elements > 0:
        density = layer.weight_nonzero / layer.weight_elements
        weight_bytes = layer.weight_nonzero * (layer.weight_bits + prof.sparse_index_bits) / 8.0
    else:
        density = 1.0
        weight_bytes = layer.weight_elements * layer.weight_bits / 8.0
    compute_pj = layer.macs * density * prof.mac(cls).total
    if weight_bytes <= 0:
        storage = "none"
        weight_pj = 0.0
    elif weight_bytes <= sram_left:
        storage = "sram"
        sram_left -= weight_bytes
        weight_pj = weight_bytes * sram_word
    else:
        storage = "dram"
        weight_pj = weight_bytes * dram_word
    act_bytes = (layer.activations_in + layer.activations_out) * layer.activation_bits / 8.0
    act_pj = act_bytes * (sram_word if act_bytes <= prof.activation_sram_bytes else dram_word)
    compute_uj = compute_pj * _PJ_TO_UJ / batch_size
    memory_uj = (weight_pj + act_pj) * _PJ_TO_UJ / batch_size
    energy = LayerEnergy(
        name=layer.name,
        macs=int(round(layer.macs / batch_size)),
        weight_bits=layer.weight_bits,
        activation_bits=layer.activation_bits,
        compute_uj=compute_uj,
        memory_uj=memory_uj,
        total_uj=compute_uj + memory_uj,
        compute_class=cls,
        weight_storage=storage,
        weight_bytes=weight_bytes,
        activation_bytes=act_bytes / batch_size,
    )
    return energy, sram_left


def estimate_from_layers(
    layers: Iterable[LayerCost],
    profile: EnergyProfile | str = DEFAULT_PROFILE,
    *,
    batch_size: int = 1,
) -> EnergyEstimate:
    """Apply the energy formula (module docstring) to per-layer costs; a pure function.

    `layers` describe one forward pass of `batch_size` samples, in model order (the order in which
    the on-chip weight budget is filled); the result is per inference (divided by `batch_size`).
    """
    prof = load_profile(profile)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} must be a positive integer.")
    sram_left = float(prof.weight_sram_bytes)
    per_layer: list[LayerEnergy] = []
    for layer in layers:
        if not isinstance(layer, LayerCost):
            raise ConfigError(f"estimate_from_layers expects LayerCost items, got {type(layer).__name__}.")
        energy, sram_left = _layer_energy(layer, prof, sram_left=sram_left, batch_size=batch_size)
        per_layer.append(energy)
    compute_total = sum(e.compute_uj for e in per_layer)
    memory_total = sum(e.memory_uj for e in per_layer)
    return EnergyEstimate(
        total_uj=compute_total + memory_total,
        compute_uj=compute_total,
        memory_uj=memory_total,
        per_layer=per_layer,
        source=f"estimate ({prof.name})",
        profile=prof.name,
        batch_size=batch_size,
    )


# --------------------------------------------------------------------------------------------------
# From a model


_ACTIVATION_INT_DTYPES = (torch.int8, torch.uint8)


def _numel_tensors(value: Any) -> int:
    """Elements of the activation tensors in `value`: floating point or 8-bit integer (quantized);
    index tensors (int64) and boolean masks are not activation traffic."""
    if isinstance(value, torch.Tensor):
        return value.numel() if value.dtype.is_floating_point or value.dtype in _ACTIVATION_INT_DTYPES else 0
    if isinstance(value, Mapping):
        return sum(_numel_tensors(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_numel_tensors(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(_numel_tensors(getattr(value, f.name)) for f in dataclasses.fields(value))
    if hasattr(value, "to_tuple"):  # transformers ModelOutput
        return _numel_tensors(value.to_tuple())
    return 0


def _activation_dtype(value: Any) -> torch.dtype | None:
    """The dtype of a layer's activations: its first floating-point input, else its first 8-bit
    integer input (a quantized activation); index tensors (int64) and masks (bool) are not activations."""
    tensors: list[torch.Tensor] = []

    def collect(item: Any) -> None:
        if isinstance(item, torch.Tensor):
            tensors.append(item)
        elif isinstance(item, Mapping):
            for v in item.values():
                collect(v)
        elif isinstance(item, (list, tuple)):
            for v in item:
                collect(v)

    collect(value)
    for tensor in tensors:
        if tensor.dtype.is_floating_point:
            return tensor.dtype
    for tensor in tensors:
        if tensor.dtype in _ACTIVATION_INT_DTYPES:
            return tensor.dtype
    return None


def layer_costs(model: nn.Module, example_input: Any) -> list[LayerCost]:
    """The :class:`LayerCost` of each layer with MACs for one forward pass on `example_input`.

    One forward pass (eval mode, no grad, modes restored) under FlopCounterMode, with temporary
    forward hooks that count each module's input/output elements; the hooks are removed afterwards.
    """
    return layer_costs_and_macs(model, example_input)[0]


def layer_costs_and_macs(model: nn.Module, example_input: Any) -> tuple[list[LayerCost], MacCount]:
    """:func:`layer_costs` and the :class:`MacCount` of the same forward pass."""
    io: dict[int, list[Any]] = {}

    def hook(module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        entry = io.setdefault(id(module), [0, 0, None])
        entry[0] += _numel_tensors(args) + _numel_tensors(kwargs)
        entry[1] += _numel_tensors(output)
        if entry[2] is None:
            entry[2] = _activation_dtype((args, kwargs))

    handles = [m.register_forward_hook(hook, with_kwargs=True) for m in model.modules()]
    try:
        macs, _ = trace_macs(model, example_input)
    finally:
        for handle in handles:
            handle.remove()
    params = count_layer_parameters(model)
    costs: list[LayerCost] = []
    for name, layer_macs in macs.per_layer.items():
        module = module_by_display_name(model, name)
        n_in, n_out, in_dtype = io.get(id(module), [0, 0, None])
        counted = params.get(name)
        inferred_w = weight_dtype_bits(module)
        declared = storage_bits(module)  # the layer contract's bits of a compressed layer
        act_bits = declared.activation if declared is not None else None
        if act_bits is None:
            act_bits = dtype_bits(in_dtype) if in_dtype is not None else (inferred_w or 32)
        w_bits = (declared.weight if declared is not None else None) or inferred_w or act_bits
        costs.append(
            LayerCost(
                name=name,
                macs=int(layer_macs),
                weight_elements=counted.params if counted else 0,
                weight_nonzero=counted.nonzero if counted else 0,
                weight_bits=int(w_bits),
                activation_bits=int(act_bits),
                activations_in=int(n_in),
                activations_out=int(n_out),
                sparse_kernel=uses_sparse_kernel(module),
            )
        )
    return costs, macs


def estimate_energy(
    model: nn.Module,
    example_input: Any,
    *,
    profile: str | Path | EnergyProfile = DEFAULT_PROFILE,
    sram_bytes: int | None = None,
    batch_size: int | None = None,
) -> EnergyEstimate:
    """Estimated energy per inference of `model` on `example_input` (see the module docstring).

    `sram_bytes` overrides the profile's on-chip weight budget. `batch_size` is the number of
    samples in `example_input` (default: its leading dimension); energies are divided by it.
    The model is not changed.
    """
    prof = load_profile(profile)
    if sram_bytes is not None:
        prof = prof.replace(weight_sram_bytes=sram_bytes)
    if batch_size is None:
        try:
            batch_size = batch_size_of(example_input)
        except Exception:  # noqa: BLE001 - a model without a batch dimension: one inference
            batch_size = 1
    return estimate_from_layers(layer_costs(model, example_input), prof, batch_size=batch_size)


def energy_report_dict(estimate: EnergyEstimate, measured: Any = None) -> dict[str, Any]:
    """The energy fields of a report.

    ``energy_uj``: the measured joules per inference (as µJ) when `measured` is an
    :class:`~torchslim.measure.power.EnergyMeasurement`, else the estimate's total;
    ``energy_source``: ``"measured (rapl)"``/``"measured (nvml)"`` or ``"estimate (<profile>)"``;
    ``energy_layers``: per-layer estimated µJ; ``energy_measured``: the measured µJ, the
    not-measurable reason, or None when no measurement was attempted; ``energy_estimate_uj``: the
    estimate's total, always (measured and estimated energies are different quantities).
    """
    from torchslim.measure.power import EnergyMeasurement, NotMeasurable

    out: dict[str, Any] = {
        "energy_uj": estimate.total_uj,
        "energy_source": estimate.source,
        "energy_layers": {layer.name: layer.total_uj for layer in estimate.per_layer},
        "energy_measured": None,
        "energy_estimate_uj": estimate.total_uj,
    }
    if isinstance(measured, EnergyMeasurement):
        out["energy_uj"] = measured.uj_per_inference
        out["energy_source"] = measured.label
        out["energy_measured"] = measured.uj_per_inference
    elif isinstance(measured, NotMeasurable):
        out["energy_measured"] = measured.reason
    elif measured is not None:
        raise ConfigError(
            f"measured must be an EnergyMeasurement, NotMeasurable or None, got {type(measured).__name__}."
        )
    return out


__all__ = [
    "COMPUTE_CLASSES",
    "DEFAULT_PROFILE",
    "EnergyEstimate",
    "EnergyProfile",
    "LayerCost",
    "LayerEnergy",
    "MacEnergy",
    "SPARSE_KERNEL_ATTRIBUTE",
    "available_profiles",
    "compute_class",
    "energy_report_dict",
    "estimate_energy",
    "estimate_from_layers",
    "layer_costs",
    "layer_costs_and_macs",
    "load_profile",
]
