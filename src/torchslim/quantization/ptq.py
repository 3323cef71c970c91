"""Post-training quantization: choose the layers, calibrate, quantize, correct, measure.

:func:`plan_layers` decides per layer what happens (bit-width, granularity, input quantization)
and why a selected layer stays float. :func:`quantize_layers` then

1. runs the calibration batches once through the float model, collecting per layer what the
   chosen methods need: activation observers (static input quantization), GPTQ Hessians, mean
   inputs (bias correction), plus the float model's outputs;
2. quantizes each layer's weight (round-to-nearest with a min-max / percentile / MSE range, or GPTQ)
   and applies bias correction: with ``eps = W_hat - W`` the expected output shifts by
   ``eps E[x]``, so ``b <- b - eps E[x]`` (Nagel, van Baalen, Blankevoort & Welling 2019, "Data-free
   quantization through weight equalization and bias correction", section 4.2, with ``E[x]``
   measured on calibration data; for a convolution, ``eps`` is summed over the kernel window);
3. runs the batches through the quantized model and reports per layer the weight SQNR and the
   output SQNR (the quantized layer versus its float original on the same input), and for the
   whole model the output SQNR, top-1 agreement and cosine against the float outputs.

Statistics come from the float model (not layer by layer from the partially quantized one), which
keeps it to one calibration pass; GPTQ's paper quantizes sequentially, a documented difference.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Callable, Iterable

import torch
from torch import Tensor, nn

from torchslim.core.errors import ConfigError, DataError, ModelError, did_you_mean
from torchslim.core.targets import Targets
from torchslim.quantization.calibration import call_model, eval_mode, output_tensor
from torchslim.quantization.functional import (
    Granularity,
    dequantize,
    quantize,
    sqnr_db,
)
from torchslim.quantization.modules import (
    ActivationSpec,
    QuantizedMixin,
    WeightSpec,
    fold_split_weight,
    quantizable,
    quantize_module,
)
from torchslim.quantization.observers import Observer, make_observer, weight_qparams
from torchslim.quantization.packing import packed_nbytes


@dataclasses.dataclass
class LayerChoice:
    """What happens to one layer."""

    name: str
    module: nn.Module
    weight_spec: WeightSpec
    act_spec: ActivationSpec | None
    method: str  # minmax | percentile | mse | gptq
    split_outliers: int = 0  # input channels to split (outlier channel splitting), 0 = none
    quantize_output: bool = False  # static int8 output (its output reaches no quantized layer's input)


SINGLE_CHANNEL_REASON = (
    "one input channel: kept float (onnxruntime's int8 convolution packs input channels in fours, and this "
    "layer's cost is its outputs, which int8 does not make cheaper; quantize_single_channel_convs=true quantizes it)"
)


def unquantized_outputs(model: nn.Module, choices: list[LayerChoice]) -> set[str] | None:
    """Names of static-input ``Conv2d`` layers whose output reaches something other than a
    static-input quantized layer (a residual ``Add``, a ``cat``, the model output).

    An int8 runtime cannot run these as integer kernels unless their output is quantized too
    (onnxruntime fuses ``DQ -> Conv -> Q`` only). Only ReLU, max-pooling, flatten, reshape-like calls
    and identity / dropout are followed (max and ReLU commute with quantization; see
    :func:`torchslim.graph.flow.outputs_reaching_others`). None when ``torch.fx`` cannot trace `model`.
    """
    from torchslim.graph.flow import outputs_reaching_others

    static = {c.name for c in choices if c.act_spec is not None and c.act_spec.mode == "static"}
    convs = {c.name for c in choices if c.name in static and isinstance(c.module, nn.Conv2d)}
    if not convs:
        return set()
    return outputs_reaching_others(model, convs, static)


def name_matches(pattern: str, name: str) -> bool:
    """Targets' name rule: exact or dotted prefix, or ``re:<regex>`` full match."""
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], name) is not None
    return pattern == name or name.startswith(pattern + ".")


def plan_layers(
    model: nn.Module,
    *,
    targets: Targets | None,
    weight_spec: WeightSpec,
    act_spec: ActivationSpec | None,
    method: str,
    layer_bits: dict[str, int] | None = None,
    gptq_ok: Callable[[nn.Module], bool] | None = None,
    outlier_channels: int = 0,
    single_channel_convs: bool = True,
) -> tuple[list[LayerChoice], dict[str, str]]:
    """The layers to quantize (in model order) and ``{name: reason}`` for selected layers that stay float.

    With ``single_channel_convs=False`` and static input quantization, convolutions with one input
    channel (``groups == 1``) stay float (see ``Quantize.quantize_single_channel_convs``).
    Checks, before any work, that every layer's weight has the granularity's axis and only finite
    values, and that every `layer_bits` pattern selects a layer.
    """
    selected = (targets or Targets()).resolve(model)
    choices: list[LayerChoice] = []
    skipped: dict[str, str] = {}
    layer_bits = dict(layer_bits or {})
    used = {p: False for p in layer_bits}
    for name, module in selected:
        if any(name.startswith(c.name + ".") for c in choices):
            continue  # a child of a layer already chosen (e.g. a padding module)
        reason = quantizable(module)
        if reason is not None:
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                reason = "BatchNorm is not quantized (fold it into the convolution before it: fold_batchnorm=true)"
            skipped[name] = reason
            continue
        if (not single_channel_convs and act_spec is not None and act_spec.mode == "static"
                and isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and module.groups == 1 and module.in_channels == 1):
            skipped[name] = SINGLE_CHANNEL_REASON
            continue
        spec = weight_spec
        for pattern, bits in layer_bits.items():
            if name_matches(pattern, name):
                spec = dataclasses.replace(spec, bits=int(bits))
                used[pattern] = True
                break
        weight = module.weight
        spec.granularity.check(weight.shape, what=f"layer {name!r} weight")
        if not torch.isfinite(weight.detach()).all():
            raise ModelError(f"layer {name!r}: the weight contains NaN or inf; refusing to quantize it.")
        layer_method = method
        if method == "gptq" and gptq_ok is not None and not gptq_ok(module):
            layer_method = "mse" if spec.bits < 8 else "minmax"
        act = None if isinstance(module, nn.Embedding) else act_spec  # a lookup has no activations to quantize
        if isinstance(module, nn.Embedding) and layer_method == "gptq":
            layer_method = "mse" if spec.bits < 8 else "minmax"
        if layer_method == "gptq" and torch.nn.utils.parametrize.is_parametrized(module, "weight"):
            # GPTQ's error compensation would move pruned (masked) weights off zero; round-to-nearest keeps them
            layer_method = "mse" if spec.bits < 8 else "minmax"
        split = 0
        if (outlier_channels > 0 and isinstance(module, nn.Linear) and act is not None and act.mode == "dynamic"
                and act.granularity == "per_tensor" and layer_method != "gptq"
                and spec.granularity.per_output_channel(weight.shape)):
            split = min(outlier_channels, module.in_features // 32)  # meant for wide layers: at most 1 in 32
        choices.append(LayerChoice(name, module, spec, act, layer_method, split))
    for pattern, hit in used.items():
        if not hit:
            raise ConfigError(
                f"layer_bits pattern {pattern!r} matches none of the layers being quantized."
                + did_you_mean(pattern, [c.name for c in choices])
            )
    return choices, skipped


# ----------------------------------------------------------------------------------------------
# calibration statistics

@dataclasses.dataclass
class LayerStats:
    observer: Observer | None = None
    hessian: Any = None
    input_sum: Tensor | None = None
    input_count: int = 0
    channel_absmax: Tensor | None = None
    output_observer: Observer | None = None

    def mean_input(self) -> Tensor | None:
        if self.input_sum is None or self.input_count == 0:
            return None
        return self.input_sum / self.input_count


def _channel_sum(module: nn.Module, x: Tensor) -> tuple[Tensor, int]:
    """Per-input-channel sum and count of `x` (last dim for Linear, dim 1 for convolutions)."""
    x = x.detach().float()
    if isinstance(module, nn.Linear):
        flat = x.reshape(-1, x.shape[-1])
        return flat.sum(dim=0), flat.shape[0]
    flat = x.transpose(0, 1).reshape(x.shape[1], -1)
    return flat.sum(dim=1), flat.shape[1]


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
    from torchslim.quantization.gptq import HessianAccumulator

    stats: dict[str, LayerStats] = {}
    handles = []
    for choice in choices:
        st = LayerStats()
        if choice.act_spec is not None and choice.act_spec.mode == "static":
            st.observer = make_observer(observer, bits=choice.act_spec.bits, symmetric=choice.act_spec.symmetric,
                                        percentile=percentile)
        if choice.method == "gptq":
            st.hessian = HessianAccumulator(choice.module)
        if choice.quantize_output:
            st.output_observer = make_observer(observer, bits=8, symmetric=False, percentile=percentile)
        stats[choice.name] = st
        if (st.observer is None and st.hessian is None and st.output_observer is None and not need_mean
                and not choice.split_outliers):
            continue

        def hook(module: nn.Module, args: tuple[Any, ...], output: Any, st: LayerStats = st, name: str = choice.name,
                 split_outliers: int = choice.split_outliers) -> None:
            x = args[0] if args else None
            if not isinstance(x, Tensor) or not x.is_floating_point():
                return
            if not torch.isfinite(x).all():
                raise DataError(f"the input of layer {name!r} contains NaN or inf on the calibration data.")
            if st.observer is not None:
                st.observer.observe(x)
            if st.hessian is not None:
                st.hessian.add(x)
            if need_mean:
                s, n = _channel_sum(module, x)
                st.input_sum = s if st.input_sum is None else st.input_sum + s
                st.input_count += n
            if split_outliers:
                amax = x.detach().float().reshape(-1, x.shape[-1]).abs().amax(dim=0)
                st.channel_absmax = amax if st.channel_absmax is None else torch.maximum(st.channel_absmax, amax)
            if st.output_observer is not None and isinstance(output, Tensor):
                st.output_observer.observe(output)

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
    groups = getattr(module, "groups", 1)
    out_ch, in_per_group = delta_w.shape[0], delta_w.shape[1]
    summed = delta_w.reshape(out_ch, in_per_group, -1).sum(dim=2)  # [O, I/g]
    means = mean_input.reshape(groups, in_per_group)
    group_of = torch.arange(out_ch) // (out_ch // groups)
    return (summed * means[group_of]).sum(dim=1)


# ----------------------------------------------------------------------------------------------
# quantize

def outlier_split(channel_absmax: Tensor, k: int, *, max_extra: int | None = None, min_ratio: float = 2.0) -> Tensor:
    """Outlier channel splitting (Zhao, Hu, Dotzel, De Sa & Zhang 2019, "Improving neural network
    quantization without retraining using outlier channel splitting", ICML): the input channels to
    duplicate so that no channel's range exceeds the ``(k+1)``-th largest one.

    ``x W^T = sum_j x_j W_j``; writing channel ``j`` as ``m_j`` copies ``x_j / m_j`` (and its weight
    column ``W_j`` repeated ``m_j`` times) changes nothing in exact arithmetic but divides the
    channel's range by ``m_j``, so a per-tensor activation scale no longer has to stretch over one
    outlier channel. With ``c`` the ``(k+1)``-th largest calibration range ``max |x_j|``, each of the
    `k` largest channels gets ``m_j = ceil(max |x_j| / c)`` copies; the weight's ranges are unchanged
    (columns are repeated, not scaled). At most `max_extra` copies are added (default: one per 16
    input channels), the largest channels first; nothing is split unless the largest range is at
    least `min_ratio` times ``c`` (each split costs a pass over the input at run time). Returns the original index of every extra copy (a
    channel appears ``m_j - 1`` times; empty when no channel stands out).
    """
    amax = channel_absmax.detach().float().reshape(-1)
    if k <= 0 or amax.numel() <= k:
        return torch.zeros(0, dtype=torch.int64)
    top = torch.topk(amax, k + 1)
    ceiling = float(top.values[-1])
    if ceiling <= 0 or float(top.values[0]) < min_ratio * ceiling:
        return torch.zeros(0, dtype=torch.int64)
    budget = amax.numel() // 16 if max_extra is None else max_extra
    extra: list[int] = []
    for index, value in zip(top.indices[:-1].tolist(), top.values[:-1].tolist()):
        copies = min(math.ceil(value / ceiling - 1e-6) - 1, budget - len(extra))
        extra += [index] * max(copies, 0)
    return torch.tensor(sorted(extra), dtype=torch.int64)


def quantize_weight(
    choice: LayerChoice,
    stats: LayerStats | None,
    *,
    percentile: float = 99.99,
    gptq_block_size: int = 128,
    gptq_damp: float = 0.01,
    weight: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(codes, scale, zero_point)`` of the layer's weight (or of `weight`) by its method."""
    weight = choice.module.weight.detach().float() if weight is None else weight
    spec = choice.weight_spec
    if choice.method == "gptq" and stats is not None and stats.hessian is not None and stats.hessian.samples > 0:
        from torchslim.quantization.gptq import gptq_quantize

        return gptq_quantize(weight, stats.hessian.hessian, spec=spec, block_size=gptq_block_size, damp=gptq_damp,
                             range_method="mse" if spec.bits < 8 else "minmax")
    range_method = "minmax" if choice.method == "gptq" else choice.method
    scale, zp = weight_qparams(weight, bits=spec.bits, symmetric=spec.symmetric, granularity=spec.granularity,
                               method=range_method, percentile=percentile)
    return quantize(weight, scale, zp, bits=spec.bits, granularity=spec.granularity), scale, zp


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put `new` where layer `name` is (ModuleList / Sequential / ModuleDict aware)."""
    from torchslim.graph.surgery import set_module as _set

    _set(model, name, new)


def quantize_layers(
    model: nn.Module,
    choices: list[LayerChoice],
    batches: list[Any] | None,
    *,
    observer: str = "minmax",
    percentile: float = 99.99,
    bias_correction: bool = False,
    gptq_block_size: int = 128,
    gptq_damp: float = 0.01,
) -> tuple[nn.Module, dict[str, nn.Module], list[Tensor] | None]:
    """Replace every chosen layer of `model` (in place) by its quantized form.

    Returns the model, ``{name: float layer}`` (the originals, for reports) and the float model's
    outputs on `batches` (None without batches).
    """
    needs_data = any(
        (c.act_spec is not None and c.act_spec.mode == "static") or c.method == "gptq" for c in choices
    ) or bias_correction
    if needs_data and not batches:
        raise DataError("This quantization needs calibration data (static activations, GPTQ or bias correction).")
    stats: dict[str, LayerStats] = {}
    float_outputs = None
    if batches:
        stats, float_outputs = collect_stats(model, choices, batches, observer=observer, percentile=percentile,
                                             need_mean=bias_correction)
    originals: dict[str, nn.Module] = {}
    shared_splits: dict[tuple[int, ...], Tensor] = {}
    shared_buffers: dict[int, dict[str, Tensor]] = {}
    for choice in choices:
        st = stats.get(choice.name)
        split = None
        weight = choice.module.weight.detach().float()
        if choice.split_outliers and st is not None and st.channel_absmax is not None:
            split = outlier_split(st.channel_absmax, choice.split_outliers)
            if split.numel():
                # layers reading the same input (query / key / value) get the same index tensor
                split = shared_splits.setdefault(tuple(split.tolist()), split)
                weight = torch.cat([weight, weight[:, split]], dim=1)
        codes, scale, zp = quantize_weight(choice, st, percentile=percentile, gptq_block_size=gptq_block_size,
                                           gptq_damp=gptq_damp, weight=weight)
        module = choice.module
        old_bias = getattr(module, "bias", None)
        bias = old_bias.detach().float() if isinstance(old_bias, Tensor) else None
        if bias_correction and st is not None and st.mean_input() is not None and not isinstance(module, nn.Embedding):
            w = module.weight.detach().float()
            w_hat = dequantize(codes, scale, zp, granularity=choice.weight_spec.granularity)
            if split is not None:
                w_hat = fold_split_weight(w_hat, split)
            shift = bias_shift(module, w_hat - w, st.mean_input())  # type: ignore[arg-type]
            bias = (bias if bias is not None else torch.zeros_like(shift)) - shift
        input_scale = input_zp = None
        if choice.act_spec is not None and choice.act_spec.mode == "static":
            assert st is not None and st.observer is not None
            input_scale, input_zp = st.observer.qparams()
        output_qparams = st.output_observer.qparams() if st is not None and st.output_observer is not None else None
        new = quantize_module(module, weight_spec=choice.weight_spec, codes=codes, scale=scale, zero_point=zp,
                              act_spec=choice.act_spec, input_scale=input_scale, input_zero_point=input_zp, bias=bias,
                              split_channels=split, output_qparams=output_qparams)
        if split is not None and split.numel():
            # one set of split tensors per input: the ONNX export then shares the split ops between layers
            mine = {k: new._buffers[k] for k in ("_split_mult_main", "_split_mult_extra")}
            for key, tensor in shared_buffers.setdefault(id(split), mine).items():
                new._buffers[key] = tensor
        originals[choice.name] = module
        set_module(model, choice.name, new)
    return model, originals, float_outputs


# ----------------------------------------------------------------------------------------------
# report

def _finite(value: float) -> float | None:
    return None if value is None or math.isnan(value) else (round(value, 3) if math.isfinite(value) else value)


def layer_weight_bytes(module: QuantizedMixin) -> int:
    spec = module.weight_spec
    n = module.stored_codes().numel()
    params = module.weight_scale.numel()  # type: ignore[attr-defined]
    zp_bytes = 0 if spec.symmetric or spec.bits == 1 else params
    return packed_nbytes(n, spec.bits) + 4 * params + zp_bytes


def report_layers(
    model: nn.Module,
    choices: list[LayerChoice],
    originals: dict[str, nn.Module],
    batches: list[Any] | None,
    float_outputs: list[Tensor] | None,
    *,
    method_label: Callable[[LayerChoice], str] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-layer rows (bit-width, weight SQNR, output SQNR) and model-level agreement numbers."""
    sums: dict[str, list[float]] = {c.name: [0.0, 0.0] for c in choices}
    handles = []
    if batches:
        for choice in choices:
            qmod = model.get_submodule(choice.name)
            fmod = originals[choice.name]

            def hook(module: nn.Module, args: tuple[Any, ...], output: Any, fmod: nn.Module = fmod, acc: list[float] = sums[choice.name]) -> None:
                x = args[0] if args else None
                if not isinstance(x, Tensor) or not isinstance(output, Tensor):
                    return
                ref = fmod(x).double()
                err = ref - output.double()
                acc[0] += float((ref * ref).sum())
                acc[1] += float((err * err).sum())

            handles.append(qmod.register_forward_hook(hook))
    q_outputs: list[Tensor] = []
    try:
        if batches:
            with eval_mode(model):
                for inputs in batches:
                    q_outputs.append(output_tensor(call_model(model, inputs)).detach().float())
    finally:
        for h in handles:
            h.remove()
    rows = []
    for choice in choices:
        qmod = model.get_submodule(choice.name)
        w = originals[choice.name].weight.detach().float()
        w_hat = qmod.effective_weight()  # type: ignore[operator]
        signal, noise = sums[choice.name]
        out_sqnr = None
        if batches:
            out_sqnr = math.inf if noise == 0 else (10 * math.log10(signal / noise) if signal > 0 else -math.inf)
        act = choice.act_spec
        rows.append({
            "layer": choice.name,
            "type": type(originals[choice.name]).__name__,
            "weight_bits": choice.weight_spec.bits,
            "activation_bits": act.bits if act is not None else None,
            "activations": act.mode if act is not None else "float",
            "granularity": choice.weight_spec.granularity.kind,
            "group_size": choice.weight_spec.granularity.group_size,
            "method": method_label(choice) if method_label else choice.method,
            "params": int(w.numel()),
            "split_channels": int(qmod.quant_layout()["split_channels"]),  # type: ignore[operator]
            "weight_sqnr_db": _finite(sqnr_db(w, w_hat)),
            "output_sqnr_db": _finite(out_sqnr) if out_sqnr is not None else None,
            "weight_bytes_float": int(w.numel() * 4),
            "weight_bytes": layer_weight_bytes(qmod),  # type: ignore[arg-type]
        })
    info: dict[str, Any] = {}
    if batches and float_outputs:
        ref = torch.cat([o.reshape(o.shape[0], -1) for o in float_outputs])
        got = torch.cat([o.reshape(o.shape[0], -1) for o in q_outputs])
        info["output_sqnr_db"] = _finite(sqnr_db(ref, got))
        info["output_cosine"] = round(float(torch.nn.functional.cosine_similarity(ref.double(), got.double(), dim=1).mean()), 6)
        unit_rows = bool(torch.allclose(ref.norm(dim=1), torch.ones(ref.shape[0]), atol=1e-3))
        if ref.dim() == 2 and ref.shape[1] > 1 and not unit_rows:  # logits, not normalised embeddings
            info["top1_agreement"] = round(float((ref.argmax(1) == got.argmax(1)).float().mean()), 6)
        info["report_samples"] = int(ref.shape[0])
    return rows, info


def plan_entry(model: nn.Module, names: Iterable[str]) -> dict[str, Any]:
    """The ``quantize`` plan entry that rebuilds the quantized layers `names` on load."""
    return {"kind": "quantize", "layers": {n: model.get_submodule(n).quant_layout() for n in names}}  # type: ignore[operator]


def append_plan(model: nn.Module, entry: dict[str, Any]) -> None:
    plan = list(getattr(model, "torchslim_plan", []) or [])
    plan.append(entry)
    model.torchslim_plan = plan


__all__ = [
    "LayerChoice", "LayerStats", "Granularity", "append_plan", "bias_shift", "collect_stats", "name_matches",
    "outlier_split", "plan_entry", "plan_layers", "quantize_layers", "quantize_weight", "report_layers",
]
