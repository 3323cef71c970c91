"""Building quantized and fake-quantized layers from float ones, and back.

* :func:`quantize_module` - a ``Quantized<Class>`` copy of a float layer with given codes;
* :func:`empty_quantized` - the same structure from a plan layout (an artifact fills it);
* :func:`fake_quant_module` / :func:`convert_fake_quant` - QAT's ``FakeQuant<Class>`` and its
  integer form after training;
* :func:`dequantize_module` - the float layer a quantized layer simulates.

The generated classes subclass :class:`~torchslim.quantization.quantized.QuantizedMixin` (or
:class:`~torchslim.quantization.fake_quant.FakeQuantMixin`) and the float class, and keep the float
class's ``forward``.
"""

from __future__ import annotations

import copy
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from torchslim.core.errors import ArtifactError, ModelError
from torchslim.quantization.fake_quant import FakeQuantMixin, LSQQuantizer
from torchslim.quantization.functional import Granularity, quantize
from torchslim.quantization.levels import scale_shape
from torchslim.quantization.outliers import split_multipliers
from torchslim.quantization.quantized import QuantizedMixin
from torchslim.quantization.specs import OWN_KEYS, ActivationSpec, WeightSpec


def quantizable(module: nn.Module) -> str | None:
    """None when `module` can become a quantized layer, else the reason it cannot."""
    if isinstance(module, (QuantizedMixin, FakeQuantMixin)):
        return "already quantized by an earlier step"
    if type(module).__name__ == "NonDynamicallyQuantizableLinear":
        return "its weight is read directly by nn.MultiheadAttention, which bypasses the layer's forward"
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return "transposed convolutions are not supported by the quantizer"
    if isinstance(module, nn.Embedding) and module.max_norm is not None:
        return "an Embedding with max_norm renormalizes its weight in place at every lookup"
    if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd, nn.Embedding)):
        weight = module.weight
        if not isinstance(weight, Tensor) or not weight.is_floating_point():
            return "its weight is not a floating-point tensor"
        return None
    return f"{type(module).__name__} has no integer kernel in torchslim; it stays float"


_QUANTIZED_CLASSES: dict[type, type] = {}
_FAKE_QUANT_CLASSES: dict[type, type] = {}


def _generated(prefix: str, mixin: type, base: type, cache: dict[type, type]) -> type:
    if base not in cache:
        name = f"{prefix}{base.__name__}"
        cls = type(name, (mixin, base), {"__module__": __name__, "_torchslim_float_class": base})
        # Reachable by name when the name is free (torch.nn's classes), so tools that look classes
        # up by qualified name find them; torchslim itself never pickles a model.
        if name not in globals():
            globals()[name] = cls
        else:
            cls.__qualname__ = f"{name}_{len(cache)}"
        cache[base] = cls
    return cache[base]


def quantized_class(base: type) -> type:
    """The generated ``Quantized<base>`` class (cached)."""
    return _generated("Quantized", QuantizedMixin, base, _QUANTIZED_CLASSES)


def fake_quant_class(base: type) -> type:
    """The generated ``FakeQuant<base>`` class (cached)."""
    return _generated("FakeQuant", FakeQuantMixin, base, _FAKE_QUANT_CLASSES)


def _plain_copy(module: nn.Module) -> nn.Module:
    """A deep copy with parametrizations (e.g. pruning masks) baked into plain weights."""
    from torchslim.graph.surgery import bake_parametrization

    new = copy.deepcopy(module)
    if parametrize.is_parametrized(new):
        for name in list(cast(nn.ModuleDict, new.parametrizations).keys()):
            bake_parametrization(new, name)
    return new


def _detached_copy(module: nn.Module) -> tuple[nn.Module, type, Tensor, Tensor | None]:
    """Check that `module` can be quantized; return a plain copy (masks baked), its float class, and
    the weight and bias parameters taken out of it (the caller installs the quantized form)."""
    reason = quantizable(module)
    if reason is not None:
        raise ModelError(f"{type(module).__name__} cannot be quantized: {reason}.")
    new = _plain_copy(module)
    weight = new._parameters.pop("weight")
    bias = new._parameters.pop("bias", None)
    assert weight is not None  # quantizable() checked it is a floating-point tensor
    return new, type(new), weight, bias


def _checked_split(module: nn.Module, weight: Tensor, split_channels: Tensor | None) -> Tensor | None:
    if split_channels is None or not split_channels.numel():
        return None
    if not isinstance(module, nn.Linear):
        raise ModelError(f"outlier channel splitting applies to Linear layers, not {type(module).__name__}.")
    split = split_channels
    if split.dtype != torch.int64 or split.dim() != 1 or split.requires_grad:
        split = split.detach().to(torch.int64).reshape(-1)  # else used as is: layers may share it
    if int(split.min()) < 0 or int(split.max()) >= weight.shape[1]:
        raise ModelError(f"split channel index out of range [0, {weight.shape[1]}).")
    return split


def _scalar_buffer(layer: nn.Module, name: str, value: Tensor | float | int, dtype: torch.dtype) -> None:
    if dtype == torch.float32:
        layer.register_buffer(name, torch.as_tensor(value, dtype=torch.float32).reshape(()).clone())
    else:
        layer.register_buffer(name, torch.as_tensor(value).to(dtype).reshape(()).clone())


def quantize_module(
    module: nn.Module,
    *,
    weight_spec: WeightSpec,
    codes: Tensor,
    scale: Tensor,
    zero_point: Tensor,
    act_spec: ActivationSpec | None = None,
    input_scale: Tensor | float | None = None,
    input_zero_point: Tensor | int | None = None,
    bias: Tensor | None = None,
    split_channels: Tensor | None = None,
    output_qparams: tuple[Tensor | float, Tensor | int] | None = None,
) -> QuantizedMixin:
    """A ``Quantized<Class>`` copy of `module` with the given weight codes and parameters.

    `bias` replaces the layer's bias (e.g. after bias correction). `output_qparams` (scale, int8
    zero point) quantizes the layer's output to 8 bits as well (static inputs only).
    `split_channels` (Linear only) lists the input channels that get an extra copy (outlier channel
    splitting, :mod:`~torchslim.quantization.outliers`); `codes` then has one column per copy
    appended after the original ``in_features`` columns. `module` is not changed.
    """
    new, base, weight, old_bias = _detached_copy(module)
    split = _checked_split(module, weight, split_channels)
    expected = tuple(weight.shape) if split is None else (weight.shape[0], weight.shape[1] + split.numel())
    if tuple(codes.shape) != expected:
        raise ModelError(f"weight codes {list(codes.shape)} do not match the weight {list(expected)}.")
    new.__class__ = quantized_class(base)
    assert isinstance(new, QuantizedMixin)
    new.weight_spec = weight_spec
    new.act_spec = act_spec
    param_shape = weight_spec.granularity.param_shape(expected)
    levels_shape = scale_shape(weight_spec.make_levels(), weight_spec.granularity, expected)
    new.register_buffer("weight_q", codes.detach().to(torch.int8).clone())
    new.register_buffer("weight_scale", scale.detach().to(torch.float32).reshape(levels_shape).clone())
    new.register_buffer("weight_zero_point", zero_point.detach().to(torch.int8).reshape(param_shape).clone())
    if bias is None:
        bias = old_bias
    new.register_parameter("bias_float", None if bias is None else nn.Parameter(bias.detach().clone().to(weight.dtype)))
    if act_spec is not None and act_spec.mode == "static":
        if input_scale is None or input_zero_point is None:
            raise ModelError("static activation quantization needs input_scale and input_zero_point.")
        _scalar_buffer(new, "input_scale", input_scale, torch.float32)
        _scalar_buffer(new, "input_zero_point", input_zero_point, torch.int8)
    if output_qparams is not None:
        if act_spec is None or act_spec.mode != "static":
            raise ModelError("output quantization needs static input quantization.")
        _scalar_buffer(new, "output_scale", output_qparams[0], torch.float32)
        _scalar_buffer(new, "output_zero_point", output_qparams[1], torch.int8)
    if split is not None:
        main, extra = split_multipliers(weight.shape[1], split)
        new.register_buffer("input_split", split)
        new.register_buffer("_split_mult_main", main, persistent=False)
        new.register_buffer("_split_mult_extra", extra, persistent=False)
    new.__dict__.pop("_weight_cache", None)
    return new


def empty_quantized(module: nn.Module, layout: dict[str, Any]) -> QuantizedMixin:
    """A quantized layer with the structure recorded in `layout` (zeros; weights come from an artifact)."""
    if type(module).__name__ != layout.get("class"):
        raise ArtifactError(f"plan expects a {layout.get('class')}, the rebuilt model has a {type(module).__name__}.")
    spec = WeightSpec.from_dict(layout["weight"])
    act = ActivationSpec.from_dict(layout.get("activation"))
    weight = module.weight
    assert isinstance(weight, Tensor)
    shape = tuple(weight.shape)
    split = int(layout.get("split_channels", 0) or 0)
    if split < 0 or (split and not isinstance(module, nn.Linear)):
        raise ArtifactError(f"plan: split_channels={split} is not valid for a {type(module).__name__}.")
    if split:
        shape = (shape[0], shape[1] + split)
    if list(shape) != list(layout.get("weight_shape", shape)):
        raise ArtifactError(
            f"plan expects weight shape {layout.get('weight_shape')}, the rebuilt layer has {list(shape)}."
        )
    param_shape = spec.granularity.param_shape(shape)
    static = act is not None and act.mode == "static"
    return quantize_module(
        module,
        weight_spec=spec,
        codes=torch.zeros(shape, dtype=torch.int8),
        scale=torch.ones(scale_shape(spec.make_levels(), spec.granularity, shape)),
        zero_point=torch.zeros(param_shape, dtype=torch.int8),
        act_spec=act,
        input_scale=1.0 if static else None,
        input_zero_point=0 if static else None,
        split_channels=torch.zeros(split, dtype=torch.int64) if split else None,
        output_qparams=(1.0, 0) if layout.get("output_quantized") else None,
    )


def fake_quant_module(
    module: nn.Module,
    *,
    weight_spec: WeightSpec,
    weight_scale: Tensor,
    weight_zero_point: Tensor,
    act_spec: ActivationSpec | None = None,
    input_scale: Tensor | float | None = None,
    input_zero_point: Tensor | int | None = None,
    learn_scales: bool = True,
) -> FakeQuantMixin:
    """A ``FakeQuant<Class>`` copy of `module` for QAT; its float weight and bias stay trainable."""
    masked = parametrize.is_parametrized(module, "weight")
    new, base, weight, bias = _detached_copy(module)
    new.__class__ = fake_quant_class(base)
    assert isinstance(new, FakeQuantMixin)
    new.weight_spec = weight_spec
    new.act_spec = act_spec
    new.register_parameter("weight_float", nn.Parameter(weight.detach().clone()))
    new.register_parameter("bias_float", None if bias is None else nn.Parameter(bias.detach().clone()))
    if masked:  # a pruning mask (parametrization): keep its zeros through QAT
        new.register_buffer("weight_keep", (weight.detach() != 0).to(weight.dtype))
    new.weight_quantizer = LSQQuantizer(
        weight_scale.reshape(weight_spec.granularity.param_shape(weight.shape)),
        weight_zero_point,
        bits=weight_spec.bits,
        granularity=weight_spec.granularity,
        learn=learn_scales,
    )
    if act_spec is not None and act_spec.mode == "static":
        if input_scale is None or input_zero_point is None:
            raise ModelError("static activation quantization needs input_scale and input_zero_point.")
        new.input_quantizer = LSQQuantizer(
            torch.as_tensor(input_scale, dtype=torch.float32).reshape(()),
            torch.as_tensor(input_zero_point).reshape(()),
            bits=act_spec.bits,
            granularity=Granularity.per_tensor(),
            learn=learn_scales,
        )
    return new


def convert_fake_quant(module: nn.Module) -> QuantizedMixin:
    """The ``Quantized<Class>`` layer a trained ``FakeQuant<Class>`` stands for (same outputs)."""
    if not isinstance(module, FakeQuantMixin):
        raise ModelError(f"{type(module).__name__} is not a fake-quantized layer.")
    spec = module.weight_spec
    wq_mod = module.weight_quantizer
    scale = wq_mod.scale.detach().abs().clamp(min=1e-8)
    zp = wq_mod.zero_point
    weight = module.masked_weight_float().detach()
    codes = quantize(weight, scale, zp, bits=spec.bits, granularity=spec.granularity)
    shell = _float_shell(module, weight)
    shell._buffers.pop("weight_keep", None)  # the mask's zeros are in the codes now; storing it cost dense bytes
    input_scale = input_zp = None
    if module.act_spec is not None and module.act_spec.mode == "static":
        iq = module.input_quantizer
        input_scale, input_zp = iq.scale.detach().abs().clamp(min=1e-8), iq.zero_point
    return quantize_module(
        shell,
        weight_spec=spec,
        codes=codes,
        scale=scale,
        zero_point=zp,
        act_spec=module.act_spec,
        input_scale=input_scale,
        input_zero_point=input_zp,
    )


def _float_shell(module: QuantizedMixin | FakeQuantMixin, weight: Tensor) -> nn.Module:
    """A plain float layer of `module`'s original class with `weight` (QAT/quantized -> float)."""
    base = module._torchslim_float_class
    new: nn.Module = copy.copy(module)
    new.__dict__ = dict(module.__dict__)
    new._parameters = {k: v for k, v in module._parameters.items() if k not in ("weight_float", "bias_float")}
    new._modules = {k: v for k, v in module._modules.items() if k not in ("weight_quantizer", "input_quantizer")}
    new._buffers = {k: v for k, v in module._buffers.items() if k not in OWN_KEYS}
    new.__dict__.pop("_weight_cache", None)
    new.__class__ = base
    new._parameters["weight"] = nn.Parameter(weight.detach().clone())
    if "bias_float" in module._parameters:
        b = module._parameters["bias_float"]
        new._parameters["bias"] = None if b is None else nn.Parameter(b.detach().clone())
    for attr in ("weight_spec", "act_spec"):
        new.__dict__.pop(attr, None)
    return new


def dequantize_module(module: nn.Module) -> nn.Module:
    """The float layer a quantized or fake-quantized layer simulates (weights dequantized)."""
    if isinstance(module, QuantizedMixin):
        return _float_shell(module, module.effective_weight())
    if isinstance(module, FakeQuantMixin):
        return _float_shell(module, module.weight.detach())
    raise ModelError(f"{type(module).__name__} is not a quantized layer.")


__all__ = [
    "convert_fake_quant",
    "dequantize_module",
    "empty_quantized",
    "fake_quant_class",
    "fake_quant_module",
    "quantizable",
    "quantize_module",
    "quantized_class",
]
