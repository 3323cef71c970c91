"""Post-training quantization: calibrate, quantize, correct.

:func:`~torchslim.quantization.plan.plan_layers` decides per layer what happens.
:func:`quantize_layers` then

1. runs the calibration batches once through the float model, collecting per layer what the
   chosen estimators need (:func:`collect_stats`): activation observers (static input
   quantization), GPTQ Hessians, mean inputs (bias correction), plus the float model's outputs;
2. quantizes each layer's weight with its composed
   :class:`~torchslim.quantization.quantizer.WeightQuantizer` (round-to-nearest with a min-max /
   percentile / MSE range, or GPTQ) and applies bias correction: with ``eps = W_hat - W`` the
   expected output shifts by ``eps E[x]``, so ``b <- b - eps E[x]`` (Nagel, van Baalen, Blankevoort
   & Welling 2019, "Data-free quantization through weight equalization and bias correction",
   section 4.2, with ``E[x]`` measured on calibration data; for a convolution, ``eps`` is summed
   over the kernel window).

:mod:`~torchslim.quantization.report` then measures the result. Statistics come from the float
model (not layer by layer from the partially quantized one), which keeps it to one calibration
pass; GPTQ's paper quantizes sequentially, a documented difference.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from torchslim.core.errors import DataError
from torchslim.quantization.build import quantize_module
from torchslim.quantization.calibration import call_model, eval_mode, output_tensor
from torchslim.quantization.functional import Granularity
from torchslim.quantization.observers import Observer, make_observer
from torchslim.quantization.outliers import fold_split_weight, outlier_split
from torchslim.quantization.plan import LayerChoice, name_matches, plan_layers, unquantized_outputs
from torchslim.quantization.quantizer import WeightQuantizer
from torchslim.quantization.ranges import make_range


@dataclasses.dataclass
class LayerStats:
    observer: Observer | None = None
    hessian: Any = None
    input_sum: Tensor | None = None
    input_count: int = 0
    channel_absmax: Tensor | None = None
    output_observer: Observer | None = None
    output_clamp: tuple[float, float] | None = None  # the output observer sees the clamped values

    def mean_input(self) -> Tensor | None:
        if self.input_sum is None or self.input_count == 0:
            return None
        return self.input_sum / self.input_count

    def observe(self, module: nn.Module, x: Tensor, output: Any, *, need_mean: bool, split_outliers: bool) -> None:
        """Feed one input (and output) of the layer to every statistic it collects."""
        if self.observer is not None:
            self.observer.observe(x)
        if self.hessian is not None:
            self.hessian.add(x)
        if need_mean:
            s, n = _channel_sum(module, x)
            self.input_sum = s if self.input_sum is None else self.input_sum + s
            self.input_count += n
        if split_outliers:
            amax = x.detach().float().reshape(-1, x.shape[-1]).abs().amax(dim=0)
            self.channel_absmax = amax if self.channel_absmax is None else torch.maximum(self.channel_absmax, amax)
        if self.output_observer is not None and isinstance(output, Tensor):
            clamp = self.output_clamp
            self.output_observer.observe(output if clamp is None else output.clamp(clamp[0], clamp[1]))


def _channel_sum(module: nn.Module, x: Tensor) -> tuple[Tensor, int]:
    """Per-input-channel sum and count of `x` (last dim for Linear, dim 1 for convolutions)."""
    x = x.detach().float()
    if isinstance(module, nn.Linear):
        flat = x.reshape(-1, x.shape[-1])
        return flat.sum(dim=0), flat.shape[0]
    flat = x.transpose(0, 1).reshape(x.shape[1], -1)
    return flat.sum(dim=1), flat.shape[1]


def _layer_stats(choice: LayerChoice, observer: str, percentile: float) -> LayerStats:
    from torchslim.quantization.gptq import HessianAccumulator

    st = LayerStats()
    if choice.act_spec is not None and choice.act_spec.mode == "static":
        st.observer = make_observer(
            observer, bits=choice.act_spec.bits, symmetric=choice.act_spec.symmetric, percentile=percentile
        )
    if choice.method == "gptq":
        st.hessian = HessianAccumulator(choice.module)
    if choice.quantize_output:
        st.output_observer = make_observer(observer, bits=8, symmetric=False, percentile=percentile)
        st.output_clamp = choice.output_clamp
    return st


def collect_stats(
    model: nn.Module,
    choices: list[LayerChoice],
    batches: list[Any],
    *,
    observer: str = "minmax",
    percentile: float = 99.99,
    need_mean: bool = False,
) -> tuple[dict[str, LayerStats], list[Tensor]]:
    """One pass of `batches` through `model`: per-layer statistics and the model's outputs."""
    stats: dict[str, LayerStats] = {}
    handles = []
    for choice in choices:
        st = stats[choice.name] = _layer_stats(choice, observer, percentile)
        if (
            st.observer is None
            and st.hessian is None
            and st.output_observer is None
            and not need_mean
            and not choice.split_outliers
        ):
            continue

        def hook(
            module: nn.Module,
            args: tuple[Any, ...],
            output: Any,
            st: LayerStats = st,
            name: str = choice.name,
            split_outliers: bool = bool(choice.split_outliers),
        ) -> None:
            x = args[0] if args else None
            if not isinstance(x, Tensor) or not x.is_floating_point():
                return
            if not torch.isfinite(x).all():
                raise DataError(f"the input of layer {name!r} contains NaN or inf on the calibration data.")
            st.observe(module, x, output, need_mean=need_mean, split_outliers=split_outliers)

        handles.append(choice.module.register_forward_hook(hook))
    outputs: list[Tensor] = []
    try:
        with eval_mode(model):
            for inputs in batches:
                outputs.append(output_tensor(call_model(model, inputs)).detach().float())
    finally:
        for h in handles:
            h.remove()
    return stats, outputs


def bias_shift(module: nn.Module, delta_w: Tensor, mean_input: Tensor) -> Tensor:
    """``eps E[x]`` per output channel for weight error `delta_w` and per-channel mean input."""
    if isinstance(module, nn.Linear):
        return delta_w @ mean_input
    groups = int(getattr(module, "groups", 1))
    out_ch, in_per_group = delta_w.shape[0], delta_w.shape[1]
    summed = delta_w.reshape(out_ch, in_per_group, -1).sum(dim=2)  # [O, I/g]
    means = mean_input.reshape(groups, in_per_group)
    group_of = torch.arange(out_ch) // (out_ch // groups)
    return (summed * means[group_of]).sum(dim=1)


def weight_quantizer(
    choice: LayerChoice, *, percentile: float = 99.99, gptq_block_size: int = 128, gptq_damp: float = 0.01
) -> WeightQuantizer:
    """The composed weight quantizer of a layer: its levels and granularity, its range estimator."""
    estimator = make_range(choice.method, percentile=percentile, block_size=gptq_block_size, damp=gptq_damp)
    return WeightQuantizer.for_spec(choice.weight_spec, range=estimator)


def quantize_weight(
    choice: LayerChoice,
    stats: LayerStats | None,
    *,
    percentile: float = 99.99,
    gptq_block_size: int = 128,
    gptq_damp: float = 0.01,
    weight: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(codes, scale, zero_point)`` of the layer's weight (or of `weight`) by its range estimator."""
    w = choice.module.weight
    assert isinstance(w, Tensor)
    weight = w.detach().float() if weight is None else weight
    hessian = stats.hessian if stats is not None else None
    h = hessian.hessian if hessian is not None and hessian.samples > 0 else None
    quantizer = weight_quantizer(choice, percentile=percentile, gptq_block_size=gptq_block_size, gptq_damp=gptq_damp)
    return quantizer.quantize(weight, hessian=h)


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put `new` where layer `name` is (ModuleList / Sequential / ModuleDict aware)."""
    from torchslim.graph.surgery import set_module as graph_set_module

    graph_set_module(model, name, new)


def _corrected_bias(
    choice: LayerChoice,
    st: LayerStats | None,
    codes: Tensor,
    scale: Tensor,
    zp: Tensor,
    split: Tensor | None,
    bias_correction: bool,
) -> Tensor | None:
    module = choice.module
    old_bias = getattr(module, "bias", None)
    bias = old_bias.detach().float() if isinstance(old_bias, Tensor) else None
    mean = st.mean_input() if st is not None else None
    if bias_correction and mean is not None and not isinstance(module, nn.Embedding):
        w = module.weight
        assert isinstance(w, Tensor)
        w_hat = WeightQuantizer.for_spec(choice.weight_spec).dequantize(codes, scale, zp)
        if split is not None:
            w_hat = fold_split_weight(w_hat, split)
        shift = bias_shift(module, w_hat - w.detach().float(), mean)
        bias = (bias if bias is not None else torch.zeros_like(shift)) - shift
    return bias


@dataclasses.dataclass
class _SharedSplits:
    """Layers reading the same input (query / key / value) share one split index tensor and one set of
    split multipliers, so the ONNX export shares the split ops between them."""

    indices: dict[tuple[int, ...], Tensor] = dataclasses.field(default_factory=dict)
    buffers: dict[int, dict[str, Tensor]] = dataclasses.field(default_factory=dict)


def _quantized_layer(
    choice: LayerChoice, st: LayerStats | None, shared: _SharedSplits, *, bias_correction: bool, **options: Any
) -> nn.Module:
    """The quantized form of one chosen layer (outlier split, weight codes, corrected bias, qparams)."""
    w = choice.module.weight
    assert isinstance(w, Tensor)
    weight, split = w.detach().float(), None
    if choice.split_outliers and st is not None and st.channel_absmax is not None:
        split = outlier_split(st.channel_absmax, choice.split_outliers)
        if split.numel():
            split = shared.indices.setdefault(tuple(split.tolist()), split)
            weight = torch.cat([weight, weight[:, split]], dim=1)
    codes, scale, zp = quantize_weight(choice, st, weight=weight, **options)
    input_qparams = st.observer.qparams() if st is not None and st.observer is not None else (None, None)
    new = quantize_module(
        choice.module,
        weight_spec=choice.weight_spec,
        codes=codes,
        scale=scale,
        zero_point=zp,
        act_spec=choice.act_spec,
        input_scale=input_qparams[0],
        input_zero_point=input_qparams[1],
        bias=_corrected_bias(choice, st, codes, scale, zp, split, bias_correction),
        split_channels=split,
        output_qparams=st.output_observer.qparams() if st is not None and st.output_observer is not None else None,
    )
    if split is not None and split.numel():
        mine = {k: t for k in ("_split_mult_main", "_split_mult_extra") if (t := new._buffers[k]) is not None}
        for key, tensor in shared.buffers.setdefault(id(split), mine).items():
            new._buffers[key] = tensor
    return new


def quantize_layers(
    model: nn.Module,
    choices: list[LayerChoice],
    batches: list[Any] | None,
    *,
    observer: str = "minmax",
    percentile: float = 99.99,
    activation_percentile: float | None = None,
    bias_correction: bool = False,
    gptq_block_size: int = 128,
    gptq_damp: float = 0.01,
) -> tuple[nn.Module, dict[str, nn.Module], list[Tensor] | None]:
    """Replace every chosen layer of `model` (in place) by its quantized form.

    `percentile` is the weights' percentile range, `activation_percentile` (default: the same) the observer's.

    Returns the model, ``{name: float layer}`` (the originals, for reports) and the float model's
    outputs on `batches` (None without batches).
    """
    needs_data = (
        any((c.act_spec is not None and c.act_spec.mode == "static") or c.method == "gptq" for c in choices)
        or bias_correction
    )
    if needs_data and not batches:
        raise DataError("This quantization needs calibration data (static activations, GPTQ or bias correction).")
    stats: dict[str, LayerStats] = {}
    float_outputs = None
    if batches:
        stats, float_outputs = collect_stats(
            model,
            choices,
            batches,
            observer=observer,
            need_mean=bias_correction,
            percentile=percentile if activation_percentile is None else activation_percentile,
        )
    originals: dict[str, nn.Module] = {}
    shared = _SharedSplits()
    options = {"percentile": percentile, "gptq_block_size": gptq_block_size, "gptq_damp": gptq_damp}
    for choice in choices:
        new = _quantized_layer(choice, stats.get(choice.name), shared, bias_correction=bias_correction, **options)
        originals[choice.name] = choice.module
        set_module(model, choice.name, new)
    return model, originals, float_outputs


def share_input_qparams(layer: nn.Module, scale: Tensor, zero_point: Tensor) -> None:
    """Give a static-input quantized `layer` this input scale and zero point (those of the int8 point
    it reads, so the two quantizers are one; see :mod:`torchslim.quantization.int8_graph`)."""
    for key, value, dtype in (("input_scale", scale, torch.float32), ("input_zero_point", zero_point, torch.int8)):
        current = getattr(layer, key, None)
        if isinstance(current, Tensor):
            with torch.no_grad():
                current.copy_(torch.as_tensor(value).reshape(current.shape).to(dtype))


__all__ = [
    "Granularity",
    "LayerChoice",
    "LayerStats",
    "bias_shift",
    "collect_stats",
    "name_matches",
    "outlier_split",
    "plan_layers",
    "quantize_layers",
    "quantize_weight",
    "share_input_qparams",
    "unquantized_outputs",
    "weight_quantizer",
]
