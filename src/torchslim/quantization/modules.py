"""Quantized and fake-quantized layers, built from the float layer they replace.

:func:`quantize_module` turns a ``Linear`` / ``ConvNd`` (or any subclass whose ``forward`` reads
``self.weight`` / ``self.bias``, such as EfficientNet's same-padding convolutions) into an instance
of a generated subclass ``Quantized<Class>`` that keeps the original ``forward``. The subclass

* stores the weight as int8 **codes** (``weight_q``) with ``weight_scale`` / ``weight_zero_point``
  (any granularity) and serves ``self.weight`` as their dequantization (cached);
* optionally quantizes its **input**: ``static`` (a calibrated scale and zero point, simulated with
  :func:`~torchslim.quantization.functional.fake_quantize`) or ``dynamic`` (per-tensor uint8 range
  of each input at run time, exactly ONNX ``DynamicQuantizeLinear``);
* with static input quantization serves ``self.bias`` rounded to the int32 grid of step
  ``s_in * s_w``, which is what an integer kernel adds (Jacob et al. 2018, section 2.4);
* stores its weight **packed** in artifacts (two 4-bit codes per byte, see
  :mod:`~torchslim.quantization.packing`) through ``torchslim_export_state`` /
  ``torchslim_import_state``;
* exports to ONNX as ``DequantizeLinear`` on int8 initializers, ``QuantizeLinear`` /
  ``DequantizeLinear`` on inputs and an int32 bias, so onnxruntime fuses integer kernels
  (``QLinearConv``, ``QGemm``, ``DynamicQuantizeMatMul``); see :mod:`torchslim.io.onnx_export`;
* carries ``weight_bits`` / ``activation_bits`` for the energy model.

:func:`fake_quant_module` makes the QAT counterpart ``FakeQuant<Class>``: float weights trained
through LSQ fake quantization (learned step sizes, Esser et al. 2020); :func:`convert_fake_quant`
turns it into the ``Quantized<Class>`` form after training.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from torchslim.core.errors import ArtifactError, ModelError
from torchslim.quantization.functional import (
    Granularity,
    as_granularity,
    check_bits,
    dequantize,
    fake_quantize,
    lsq_fake_quantize,
    qrange,
)
from torchslim.quantization.packing import pack_codes, unpack_codes

ActivationMode = Literal["static", "dynamic"]
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


@dataclasses.dataclass(frozen=True)
class WeightSpec:
    """How a weight is quantized: bit-width, symmetric or not, granularity."""

    bits: int = 8
    symmetric: bool = True
    granularity: Granularity = dataclasses.field(default_factory=lambda: Granularity.per_channel(0))

    def __post_init__(self) -> None:
        object.__setattr__(self, "bits", check_bits(self.bits, name="weight bits"))

    def to_dict(self) -> dict[str, Any]:
        return {"bits": self.bits, "symmetric": self.symmetric, "granularity": self.granularity.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "WeightSpec":
        return cls(int(data["bits"]), bool(data["symmetric"]), Granularity.from_dict(data["granularity"]))


@dataclasses.dataclass(frozen=True)
class ActivationSpec:
    """How a layer's input is quantized: ``static`` (calibrated, per tensor) or ``dynamic`` (8-bit, per
    tensor, range of each input at run time, ONNX ``DynamicQuantizeLinear``)."""

    mode: ActivationMode = "static"
    bits: int = 8
    symmetric: bool = False
    granularity: Literal["per_tensor", "per_token"] = "per_tensor"

    def __post_init__(self) -> None:
        object.__setattr__(self, "bits", check_bits(self.bits, name="activation bits"))
        if self.mode not in ("static", "dynamic"):
            raise ModelError(f"activation mode must be 'static' or 'dynamic', got {self.mode!r}.")
        if self.granularity not in ("per_tensor", "per_token"):
            raise ModelError(f"activation granularity must be 'per_tensor' or 'per_token', got {self.granularity!r}.")
        if self.mode == "dynamic" and (self.bits != 8 or self.symmetric):
            raise ModelError("dynamic activation quantization is 8-bit asymmetric (ONNX DynamicQuantizeLinear).")
        if self.mode == "static" and self.granularity != "per_tensor":
            raise ModelError("static activation quantization is per tensor; per_token needs mode='dynamic'.")

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "bits": self.bits, "symmetric": self.symmetric, "granularity": self.granularity}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "ActivationSpec | None":
        if not data:
            return None
        return cls(str(data["mode"]), int(data["bits"]), bool(data["symmetric"]),  # type: ignore[arg-type]
                   str(data.get("granularity", "per_tensor")))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# which layers can be quantized

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


TINY_SCALE = 1e-30


def dynamic_quantize_reference(x: Tensor, per_token: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """Dynamic uint8 quantization: codes, scale, zero point of `x` (per tensor, or per row of the
    last dimension with `per_token`).

    ``lo = min(0, min(x))``, ``hi = max(0, max(x))``, ``s = max((hi - lo) / 255, 1e-30)``,
    ``z = clamp(round(-lo / s), 0, 255)``, ``q = clamp(round(x / s) + z, 0, 255)``: per tensor this
    is ONNX ``DynamicQuantizeLinear``; per token it is what torchslim's ONNX export computes with
    ReduceMin / ReduceMax and a per-axis ``QuantizeLinear``. Returned shaped as ``x`` (codes) and as
    ``[rows, 1]`` (per token) or scalars (per tensor).
    """
    x = x.detach()
    rows = x.reshape(-1, x.shape[-1]) if per_token else x.reshape(1, -1)
    lo = torch.clamp(rows.amin(dim=1, keepdim=True), max=0.0)
    hi = torch.clamp(rows.amax(dim=1, keepdim=True), min=0.0)
    scale = torch.clamp((hi - lo) / 255.0, min=TINY_SCALE)
    zp = torch.clamp(torch.round(-lo / scale), 0, 255)
    q = torch.clamp(torch.round(rows / scale) + zp, 0, 255).reshape(x.shape)
    if not per_token:
        scale, zp = scale.reshape(()), zp.reshape(())
    return q, scale, zp


class _DynamicFakeQuant(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, per_token: bool) -> Tensor:  # type: ignore[override]
        q, scale, zp = dynamic_quantize_reference(x, per_token)
        if per_token:
            rows = q.reshape(-1, x.shape[-1])
            return ((rows - zp) * scale).reshape(x.shape).to(x.dtype)
        return ((q - zp) * scale).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad, None


def dynamic_fake_quantize(x: Tensor, per_token: bool = False) -> Tensor:
    """Simulate dynamic uint8 quantization of `x` (per tensor or per token; straight-through gradient)."""
    return _DynamicFakeQuant.apply(x, bool(per_token))


# ----------------------------------------------------------------------------------------------
# ONNX export: autograd Functions whose `symbolic` emits QuantizeLinear / DequantizeLinear

class _QDQExport(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: Tensor, zero_point: Tensor, bits: int) -> Tensor:  # type: ignore[override]
        return fake_quantize(x, scale, zero_point.to(torch.int32), bits=bits)

    @staticmethod
    def symbolic(g: Any, x: Any, scale: Any, zero_point: Any, bits: int) -> Any:
        if bits < 2:
            raise ModelError("ONNX export of 1-bit (binary) activations is not supported; use 2-8 bits.")
        qmin, qmax = qrange(bits)
        if (qmin, qmax) == (-128, 127):
            # the same grid as uint8 codes with zero point z + 128 (constant-folded at export):
            # onnxruntime's x86 integer kernels take uint8 activations, and its own int8 -> uint8
            # rewrite skips a QuantizeLinear that feeds several DequantizeLinear (two layers reading one
            # tensor, as a residual block's conv1 and shortcut do), leaving those layers in float
            as_int = g.op("Cast", zero_point, to_i=6)  # INT32
            zp_u8 = g.op("Cast", g.op("Add", as_int, g.op("Constant", value_t=torch.tensor(128, dtype=torch.int32))),
                         to_i=2)  # UINT8
            return g.op("DequantizeLinear", g.op("QuantizeLinear", x, scale, zp_u8), scale, zp_u8)
        q = g.op("QuantizeLinear", x, scale, zero_point)
        if (qmin, qmax) != (-128, 127):
            lo = g.op("Constant", value_t=torch.tensor(qmin, dtype=torch.int8))
            hi = g.op("Constant", value_t=torch.tensor(qmax, dtype=torch.int8))
            q = g.op("Clip", q, lo, hi)
        return g.op("DequantizeLinear", q, scale, zero_point)


class _DQExport(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, q: Tensor, scale: Tensor, zero_point: Tensor | None, axis: int) -> Tensor:  # type: ignore[override]
        if scale.dim() == 0:
            zp = zero_point.float() if zero_point is not None else 0.0
            return (q.float() - zp) * scale
        view = [1] * q.dim()
        view[axis] = -1
        zp = zero_point.float().reshape(view) if zero_point is not None else 0.0
        return (q.float() - zp) * scale.reshape(view)

    @staticmethod
    def symbolic(g: Any, q: Any, scale: Any, zero_point: Any, axis: int) -> Any:
        inputs = [q, scale] if zero_point is None else [q, scale, zero_point]
        if axis < 0:
            return g.op("DequantizeLinear", *inputs)
        return g.op("DequantizeLinear", *inputs, axis_i=axis)


class _DynamicLinearExport(torch.autograd.Function):
    """``y = x W^T + b`` with dynamically quantized `x`.

    Per tensor: onnxruntime's dynamic int8 pattern (DynamicQuantizeLinear, MatMulInteger, Cast, Mul,
    Add), which it fuses to DynamicQuantizeMatMul. Per token: ReduceMin / ReduceMax per row, a
    per-axis uint8 QuantizeLinear, MatMulInteger (u8 x s8, int32 accumulation) and the zero-point
    correction ``acc - z_row * colsum(W_q - z_w)`` (onnxruntime's MatMulInteger takes only a scalar
    zero point for its first input), then ``* s_row * s_w + b``.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight_t_q: Tensor, w_scale: Tensor, w_zp: Tensor, colsum: Tensor,  # type: ignore[override]
                bias: Tensor | None, per_token: bool, gather: Tensor | None = None) -> Tensor:
        w = (weight_t_q.float() - w_zp.float()) * w_scale
        xq = dynamic_fake_quantize(x, per_token)
        if gather is not None:
            xq = torch.cat([xq, xq.index_select(-1, gather)], dim=-1)
        y = xq @ w
        return y + bias if bias is not None else y

    @staticmethod
    def symbolic(g: Any, x: Any, weight_t_q: Any, w_scale: Any, w_zp: Any, colsum: Any, bias: Any, per_token: bool,
                 gather: Any = None) -> Any:
        has_bias = bias is not None and not _is_none(bias)
        if not per_token:
            xq, xs, xzp = g.op("DynamicQuantizeLinear", x, outputs=3)
            if gather is not None and not _is_none(gather):
                # onnxruntime's Gather copies one element per index on the last axis: gather only
                # the copies, and let Concat copy the rows
                xq = g.op("Concat", xq, g.op("Gather", xq, gather, axis_i=-1), axis_i=-1)
            acc = g.op("MatMulInteger", xq, weight_t_q, xzp, w_zp)
            scale = g.op("Mul", xs, w_scale)
            y = g.op("Mul", g.op("Cast", acc, to_i=1), scale)
            return g.op("Add", y, bias) if has_bias else y

        def const(value: Any, dtype: torch.dtype = torch.float32) -> Any:
            return g.op("Constant", value_t=torch.tensor(value, dtype=dtype))

        in_features = _static_dim(weight_t_q, 0)
        x2 = g.op("Reshape", x, const([-1, in_features], torch.int64))
        lo = g.op("Min", g.op("ReduceMin", x2, axes_i=[1], keepdims_i=1), const(0.0))
        hi = g.op("Max", g.op("ReduceMax", x2, axes_i=[1], keepdims_i=1), const(0.0))
        scale = g.op("Max", g.op("Div", g.op("Sub", hi, lo), const(255.0)), const(TINY_SCALE))
        zp = g.op("Clip", g.op("Round", g.op("Div", g.op("Neg", lo), scale)), const(0.0), const(255.0))
        flat = const([-1], torch.int64)
        zp_u8 = g.op("Cast", g.op("Reshape", zp, flat), to_i=2)  # UINT8
        xq = g.op("QuantizeLinear", x2, g.op("Reshape", scale, flat), zp_u8, axis_i=0)
        acc = g.op("Cast", g.op("MatMulInteger", xq, weight_t_q, const(0, torch.uint8), w_zp), to_i=1)
        acc = g.op("Sub", acc, g.op("Mul", zp, colsum))
        y = g.op("Mul", acc, g.op("Mul", scale, w_scale))
        if has_bias:
            y = g.op("Add", y, bias)
        lead = g.op("Slice", g.op("Shape", x), const([0], torch.int64), const([-1], torch.int64), const([0], torch.int64))
        out_features = _static_dim(weight_t_q, 1)
        shape = g.op("Concat", lead, const([out_features], torch.int64), axis_i=0)
        return g.op("Reshape", y, shape)


def _static_dim(value: Any, dim: int) -> int:
    sizes = value.type().sizes()
    return int(sizes[dim])


def _is_none(value: Any) -> bool:
    try:
        return value.node().mustBeNone()
    except AttributeError:
        return value is None


def _is_tracing() -> bool:
    import torch.fx._symbolic_trace as symbolic_trace

    check = getattr(symbolic_trace, "is_fx_symbolic_tracing", None) or getattr(symbolic_trace, "is_fx_tracing", None)
    return bool(check()) if check is not None else False


# ----------------------------------------------------------------------------------------------
# the quantized layer

_OWN_KEYS = ("weight_q", "weight_scale", "weight_zero_point", "bias_float", "input_scale", "input_zero_point",
             "input_split", "_split_mult_main", "_split_mult_extra", "output_scale", "output_zero_point")


def split_multipliers(in_features: int, split: Tensor) -> tuple[Tensor, Tensor]:
    """Input multipliers of outlier channel splitting: channel ``j`` with ``c_j`` extra copies in
    `split` is divided by ``m_j = 1 + c_j`` in the original slot and in each copy."""
    copies = torch.ones(in_features, dtype=torch.float32)
    if split.numel():
        copies.index_add_(0, split.long(), torch.ones(split.numel(), dtype=torch.float32))
    main = 1.0 / copies
    return main, main[split.long()]


def fold_split_weight(weight: Tensor, split: Tensor) -> Tensor:
    """The ``[out, in]`` weight a split layer computes with: ``W'[:, :in] / m + sum of its copies / m``."""
    in_features = weight.shape[1] - split.numel()
    main, extra = split_multipliers(in_features, split)
    folded = weight[:, :in_features] * main.to(weight)
    return folded.index_add(1, split.long(), weight[:, in_features:] * extra.to(weight))


class QuantizedMixin:
    """Mixed into ``Quantized<Class>``; see the module docstring. Never instantiated directly."""

    weight_spec: WeightSpec
    act_spec: ActivationSpec | None
    _torchslim_float_class: type

    # -- weights -----------------------------------------------------------------------------
    def _dequantized_weight(self) -> Tensor:
        wq, scale, zp = self.weight_q, self.weight_scale, self.weight_zero_point  # type: ignore[attr-defined]
        if _is_tracing() or not isinstance(wq, Tensor):
            return dequantize(wq, scale, zp, granularity=self.weight_spec.granularity)
        key = (wq.data_ptr(), wq._version, scale.data_ptr(), scale._version, zp.data_ptr(), zp._version, wq.device)
        cache = self.__dict__.get("_weight_cache")
        if cache is None or cache[0] != key:
            with torch.no_grad():
                w = dequantize(wq, scale, zp, granularity=self.weight_spec.granularity)
            self.__dict__["_weight_cache"] = (key, w)
            return w
        return cache[1]

    def effective_weight(self) -> Tensor:
        """The dequantized ``[out, in]`` weight of the float layer this layer stands for (split
        outlier channels folded back)."""
        w = self._dequantized_weight()
        split = self._buffers.get("input_split")  # type: ignore[attr-defined]
        return w if split is None else fold_split_weight(w, split)

    def stored_codes(self) -> Tensor:
        """The weight codes that are stored (the artifact and parameter counts): without the
        repeated columns of split outlier channels, which are copies of stored ones."""
        split = self._buffers.get("input_split")  # type: ignore[attr-defined]
        wq = self.weight_q  # type: ignore[attr-defined]
        return wq if split is None else wq[:, : wq.shape[1] - split.numel()]

    def _split_input(self, x: Tensor) -> Tensor:
        """Outlier channel splitting of the input: ``[x / m, x[split] / m[split]]`` (see
        :func:`split_multipliers`); the weight holds a copy of each split channel's column."""
        split = self.input_split  # type: ignore[attr-defined]
        return torch.cat([x * self._split_mult_main, x.index_select(-1, split) * self._split_mult_extra], dim=-1)  # type: ignore[attr-defined]

    @property
    def weight(self) -> Tensor:  # type: ignore[override]
        if self.__dict__.get("_onnx_export") and self.weight_spec.granularity.kind != "per_group":
            g = self.weight_spec.granularity
            axis = -1 if g.kind == "per_tensor" else g.check(self.weight_q.shape)  # type: ignore[attr-defined]
            zp = self.weight_zero_point.to(torch.int8)  # type: ignore[attr-defined]
            return _DQExport.apply(self.weight_q, self.weight_scale, zp, axis)  # type: ignore[attr-defined]
        return self._dequantized_weight()

    def _bias_scale(self) -> Tensor | None:
        """``s_in * s_w`` per output channel, when the bias can live on an int32 grid."""
        if self.act_spec is None or self.act_spec.mode != "static":
            return None
        g = self.weight_spec.granularity
        if not g.per_output_channel(self.weight_q.shape):  # type: ignore[attr-defined]
            return None
        s_in = self.input_scale  # type: ignore[attr-defined]
        s_w = self.weight_scale  # type: ignore[attr-defined]
        out_channels = self.weight_q.shape[0]  # type: ignore[attr-defined]
        return (s_in * s_w).reshape(-1).expand(out_channels).contiguous()

    @property
    def bias(self) -> Tensor | None:  # type: ignore[override]
        b = self._parameters.get("bias_float")  # type: ignore[attr-defined]
        if b is None:
            return None
        bias_scale = self._bias_scale()
        if bias_scale is None:
            return b
        if self.__dict__.get("_onnx_export") and "_onnx_bias_q" in self._buffers:  # type: ignore[attr-defined]
            return _DQExport.apply(self._onnx_bias_q, self._onnx_bias_scale, None, 0)  # type: ignore[attr-defined]
        # The value an integer kernel adds; gradient still flows to the float bias (STE).
        rounded = torch.round(b / bias_scale) * bias_scale
        return b + (rounded - b).detach()

    # -- inputs ------------------------------------------------------------------------------
    def _quantize_input(self, x: Tensor) -> Tensor:
        spec = self.act_spec
        if spec is None or not isinstance(x, Tensor) or not x.is_floating_point():
            return x
        if spec.mode == "dynamic":
            return dynamic_fake_quantize(x, spec.granularity == "per_token")
        if self.__dict__.get("_onnx_export"):
            return _QDQExport.apply(x, self.input_scale, self.input_zero_point, spec.bits)  # type: ignore[attr-defined]
        return fake_quantize(x, self.input_scale, self.input_zero_point.to(torch.int32), bits=spec.bits)  # type: ignore[attr-defined]

    def _embedding_export(self, ids: Tensor) -> Tensor:
        """Gather int8 rows, then dequantize only them (ONNX: Gather, Cast, Gather, Sub, Mul): the
        table stays int8 and no inference dequantizes all of it."""
        codes = torch.nn.functional.embedding(ids, self.weight_q).float()  # type: ignore[attr-defined]
        if self.weight_spec.granularity.kind == "per_tensor":
            return (codes - self.weight_zero_point.float()) * self.weight_scale  # type: ignore[attr-defined]
        scale = torch.nn.functional.embedding(ids, self.weight_scale.unsqueeze(1))  # type: ignore[attr-defined]
        if self.weight_spec.symmetric:
            return codes * scale
        zp = torch.nn.functional.embedding(ids, self.weight_zero_point.float().unsqueeze(1))  # type: ignore[attr-defined]
        return (codes - zp) * scale

    def forward(self, input: Tensor, *args: Any, **kwargs: Any) -> Tensor:  # noqa: A002
        out = self._forward_layer(input, *args, **kwargs)
        if "output_scale" in self._buffers and isinstance(out, Tensor):  # type: ignore[attr-defined]
            # an int8 output (the layer feeds no quantized input, e.g. a residual Add): exported as
            # QuantizeLinear -> DequantizeLinear after the layer, so onnxruntime fuses an integer kernel
            if self.__dict__.get("_onnx_export"):
                return _QDQExport.apply(out, self.output_scale, self.output_zero_point, 8)  # type: ignore[attr-defined]
            return fake_quantize(out, self.output_scale, self.output_zero_point.to(torch.int32), bits=8)  # type: ignore[attr-defined]
        return out

    def _forward_layer(self, input: Tensor, *args: Any, **kwargs: Any) -> Tensor:  # noqa: A002
        spec = self.act_spec
        if "_onnx_split_gather" in self._buffers and isinstance(input, Tensor):  # type: ignore[attr-defined]
            # export of a split per-tensor dynamic layer: scale, quantize, then copy the uint8 codes
            return self._dynamic_linear_export(input * self._split_mult_main, gather=self._onnx_split_gather)  # type: ignore[attr-defined]
        if "input_split" in self._buffers and isinstance(input, Tensor):  # type: ignore[attr-defined]
            input = self._split_input(input)
        if (
            self.__dict__.get("_onnx_export") and isinstance(self, nn.Embedding)
            and self.max_norm is None  # padding_idx changes only gradients
            and self.weight_spec.granularity.per_output_channel(self.weight_q.shape)  # type: ignore[attr-defined]
        ):
            return self._embedding_export(input)
        if spec is not None and spec.mode == "dynamic" and "_onnx_weight_t_q" in self._buffers:  # type: ignore[attr-defined]
            return self._dynamic_linear_export(input)
        if "_onnx_shift_weight_q" in self._buffers and isinstance(input, Tensor):  # type: ignore[attr-defined]
            return self._shifted_conv_export(input)
        if self.__dict__.get("_onnx_export") and isinstance(self, nn.Linear) and isinstance(input, Tensor) and input.dim() > 2:
            # Gemm (2-D) keeps the DequantizeLinear weight directly on the compute op, which
            # onnxruntime needs to fuse QGemm; MatMul on a transposed weight would not fuse.
            lead = input.shape[:-1]
            flat = super().forward(self._quantize_input(input.reshape(-1, input.shape[-1])), *args, **kwargs)  # type: ignore[misc]
            return flat.reshape(*lead, flat.shape[-1])
        return super().forward(self._quantize_input(input), *args, **kwargs)  # type: ignore[misc]

    def _shifted_conv_export(self, x: Tensor) -> Tensor:
        """A 3x3 convolution of a single input channel as a 2x2 convolution of four shifted copies.

        ``y[i, j] = sum_{d, e in 0..2} w[d, e] x_pad[i + d, j + e]``; with copies
        ``x_s[i, j] = x_pad[i + s_y, j + s_x]`` for ``s in {0, 1}^2`` every tap ``d = s + k``
        (``k in {0, 1}``) has one slot, the other 7 of 16 weights are zero. The products and the
        int32 sum are the same, but onnxruntime's int8 convolution packs input channels in fours and
        is slow below that (fmnist-cnn's conv1, 64 images, 1 thread: 1.35 ms as 1 channel, 0.76 ms as
        four; with the copies' Pad / Slice / Concat the whole model ran 0.59x instead of 0.72x of fp32).
        """
        pad = self.padding[0]  # type: ignore[attr-defined]
        xp = torch.nn.functional.pad(x, (pad, pad, pad, pad)) if pad else x
        # static slice bounds (no Shape ops in the graph): rows sy .. end - (1 - sy)
        copies = torch.cat([xp[..., sy:(sy - 1) or None, sx:(sx - 1) or None] for sy in (0, 1) for sx in (0, 1)], dim=1)
        g = self.weight_spec.granularity
        axis = -1 if g.kind == "per_tensor" else 0
        weight = _DQExport.apply(self._onnx_shift_weight_q, self.weight_scale,  # type: ignore[attr-defined]
                                 self.weight_zero_point.to(torch.int8), axis)  # type: ignore[attr-defined]
        return torch.nn.functional.conv2d(self._quantize_input(copies), weight, self.bias)

    def _shift_weight_codes(self) -> Tensor | None:
        """The ``[out, 4, 2, 2]`` codes of :meth:`_shifted_conv_export`, or None where it does not apply
        (it needs a static int8 input, one input channel, a 3x3 kernel, stride and dilation 1,
        zero padding 0 or 1, and per-tensor or per-output-channel weights)."""
        spec = self.act_spec
        if not (isinstance(self, nn.Conv2d) and spec is not None and spec.mode == "static"
                and self.in_channels == 1 and self.groups == 1 and tuple(self.kernel_size) == (3, 3)
                and tuple(self.stride) == (1, 1) and tuple(self.dilation) == (1, 1) and self.padding_mode == "zeros"
                and isinstance(self.padding, tuple) and self.padding[0] == self.padding[1] and self.padding[0] in (0, 1)
                and self.weight_spec.granularity.per_output_channel(self.weight_q.shape)):  # type: ignore[attr-defined]
            return None
        wq = self.weight_q  # type: ignore[attr-defined]
        zp = self.weight_zero_point.to(wq.dtype).reshape(-1, 1, 1, 1).expand(wq.shape[0], 1, 1, 1)  # type: ignore[attr-defined]
        codes = zp.expand(wq.shape[0], 4, 2, 2).clone()  # zero point codes dequantize to 0
        for d in range(3):
            sy, ky = (0, d) if d < 2 else (1, 1)
            for e in range(3):
                sx, kx = (0, e) if e < 2 else (1, 1)
                codes[:, sy * 2 + sx, ky, kx] = wq[:, 0, d, e]
        return codes

    def _dynamic_linear_export(self, x: Tensor, *, gather: Tensor | None = None) -> Tensor:
        return _DynamicLinearExport.apply(x, self._onnx_weight_t_q, self._onnx_weight_scale,  # type: ignore[attr-defined]
                                          self._onnx_weight_zp, self._onnx_weight_colsum,  # type: ignore[attr-defined]
                                          self._parameters.get("bias_float"),  # type: ignore[attr-defined]
                                          self.act_spec.granularity == "per_token", gather)  # type: ignore[union-attr]

    # -- protocol hooks ----------------------------------------------------------------------
    _EXPORT_BUFFERS = ("_onnx_bias_q", "_onnx_bias_scale", "_onnx_weight_t_q", "_onnx_weight_scale", "_onnx_weight_zp",
                       "_onnx_weight_colsum", "_onnx_split_gather", "_onnx_shift_weight_q")

    def torchslim_set_onnx_export(self, enabled: bool) -> None:
        """Called by :func:`torchslim.io.onnx_export.export_onnx` around tracing.

        Enabling precomputes the export-only constants (int32 bias codes and their scale, the
        transposed int8 weight of a dynamic Linear) as temporary buffers, so they become plain
        initializers; disabling removes them again.
        """
        buffers = self._buffers  # type: ignore[attr-defined]
        for key in self._EXPORT_BUFFERS:
            buffers.pop(key, None)
        self.__dict__["_onnx_export"] = bool(enabled)
        if not enabled:
            return
        with torch.no_grad():
            b = self._parameters.get("bias_float")  # type: ignore[attr-defined]
            bias_scale = self._bias_scale()
            if b is not None and bias_scale is not None:
                buffers["_onnx_bias_q"] = torch.clamp(torch.round(b / bias_scale), INT32_MIN, INT32_MAX).to(torch.int32)
                buffers["_onnx_bias_scale"] = bias_scale.clone()
            shift_codes = self._shift_weight_codes()
            if shift_codes is not None:
                buffers["_onnx_shift_weight_q"] = shift_codes
            spec = self.act_spec
            if spec is not None and spec.mode == "dynamic" and isinstance(self, nn.Linear):
                g = self.weight_spec.granularity
                if not g.per_output_channel(self.weight_q.shape):  # type: ignore[attr-defined]
                    raise ModelError(
                        "dynamic ONNX export needs per-tensor or per-output-channel (axis 0) weights, "
                        f"not {g.kind} on axis {g.axis}."
                    )
                wq = self.weight_q  # type: ignore[attr-defined]
                out_features = wq.shape[0]
                buffers["_onnx_weight_t_q"] = wq.t().contiguous()
                buffers["_onnx_weight_scale"] = self.weight_scale.reshape(-1).expand(out_features).contiguous().clone()  # type: ignore[attr-defined]
                zp = self.weight_zero_point.reshape(-1).expand(out_features).contiguous().clone()  # type: ignore[attr-defined]
                buffers["_onnx_weight_zp"] = zp
                buffers["_onnx_weight_colsum"] = (wq.float() - zp.float()[:, None]).sum(dim=1)
                split = buffers.get("input_split")
                if split is not None and split.numel() and spec.granularity == "per_tensor":
                    # the copies of a split channel equal its scaled original, so quantizing first and
                    # copying the uint8 codes (Gather + Concat) gives the same codes as copying floats
                    buffers["_onnx_split_gather"] = split.long().clone()

    def torchslim_onnx_info(self) -> dict[str, Any]:
        """What the exporter needs to know: whether this layer becomes an integer kernel."""
        spec = self.act_spec
        return {
            "weight_bits": self.weight_spec.bits,
            "granularity": self.weight_spec.granularity.kind,
            "activation": spec.to_dict() if spec else None,
            "integer_weights": self.weight_spec.granularity.kind != "per_group",
        }

    def quant_layout(self) -> dict[str, Any]:
        """The JSON description a plan replay needs to rebuild this layer's structure."""
        return {
            "class": self._torchslim_float_class.__name__,
            "weight": self.weight_spec.to_dict(),
            "activation": self.act_spec.to_dict() if self.act_spec else None,
            "weight_shape": list(self.weight_q.shape),  # type: ignore[attr-defined]
            "has_bias": self._parameters.get("bias_float") is not None,  # type: ignore[attr-defined]
            "split_channels": int(self._buffers["input_split"].numel()) if "input_split" in self._buffers else 0,  # type: ignore[attr-defined]
            "output_quantized": "output_scale" in self._buffers,  # type: ignore[attr-defined]
        }

    def torchslim_export_state(self, prefix: str) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """Packed weight codes (``bits`` per weight), scales, zero points (only when asymmetric),
        bias, input quantization parameters, and any other state of the layer's children."""
        wq = self.stored_codes()
        bits = self.weight_spec.bits
        tensors: dict[str, Tensor] = {
            prefix + "weight_packed": pack_codes(wq.contiguous(), bits),
            prefix + "weight_scale": self.weight_scale.detach().clone(),  # type: ignore[attr-defined]
        }
        if not self.weight_spec.symmetric and bits > 1:
            tensors[prefix + "weight_zero_point"] = self.weight_zero_point.detach().clone()  # type: ignore[attr-defined]
        bias = self._parameters.get("bias_float")  # type: ignore[attr-defined]
        if bias is not None:
            tensors[prefix + "bias"] = bias.detach().clone()
        if self.act_spec is not None and self.act_spec.mode == "static":
            tensors[prefix + "input_scale"] = self.input_scale.detach().clone()  # type: ignore[attr-defined]
            tensors[prefix + "input_zero_point"] = self.input_zero_point.detach().clone()  # type: ignore[attr-defined]
        if "input_split" in self._buffers:  # type: ignore[attr-defined]
            tensors[prefix + "input_split"] = self.input_split.detach().clone()  # type: ignore[attr-defined]
        if "output_scale" in self._buffers:  # type: ignore[attr-defined]
            tensors[prefix + "output_scale"] = self.output_scale.detach().clone()  # type: ignore[attr-defined]
            tensors[prefix + "output_zero_point"] = self.output_zero_point.detach().clone()  # type: ignore[attr-defined]
        for key, value in self.state_dict().items():  # type: ignore[attr-defined]
            if key not in _OWN_KEYS:
                tensors[prefix + key] = value.detach().clone()
        meta = {"packed": "torchslim-quantized-layer", "bits": bits, "numel": wq.numel(), **self.quant_layout()}
        return tensors, meta

    def torchslim_import_state(self, prefix: str, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        """Inverse of :meth:`torchslim_export_state`; checks every shape against this layer."""
        def take(key: str, required: bool = True) -> Tensor | None:
            value = tensors.get(prefix + key)
            if value is None and required:
                raise ArtifactError(f"layer {prefix[:-1]!r}: packed tensor {key!r} is missing.")
            return value

        wq = self.weight_q  # type: ignore[attr-defined]
        if list(meta.get("weight_shape", [])) != list(wq.shape) or int(meta.get("bits", -1)) != self.weight_spec.bits:
            raise ArtifactError(
                f"layer {prefix[:-1]!r}: stored weight {meta.get('weight_shape')} at {meta.get('bits')} bits does not "
                f"match the rebuilt layer {list(wq.shape)} at {self.weight_spec.bits} bits."
            )
        packed = take("weight_packed")
        assert packed is not None
        stored_shape = self.stored_codes().shape
        split = take("input_split", required=False) if "input_split" in self._buffers else None  # type: ignore[attr-defined]
        if "input_split" in self._buffers:  # type: ignore[attr-defined]
            if split is None or split.numel() != wq.shape[1] - stored_shape[1]:
                raise ArtifactError(f"layer {prefix[:-1]!r}: the split channel list is missing or has the wrong length.")
            if split.numel() and (int(split.min()) < 0 or int(split.max()) >= stored_shape[1]):
                raise ArtifactError(f"layer {prefix[:-1]!r}: split channel index out of range [0, {stored_shape[1]}).")
        try:
            codes = unpack_codes(packed, self.weight_spec.bits, stored_shape.numel()).reshape(stored_shape)
        except ValueError as exc:
            raise ArtifactError(f"layer {prefix[:-1]!r}: {exc}") from None
        if split is not None:
            codes = torch.cat([codes, codes[:, split.long()]], dim=1)
        with torch.no_grad():
            wq.copy_(codes)
            _copy_checked(self.weight_scale, take("weight_scale"), prefix + "weight_scale")  # type: ignore[attr-defined]
            zp = take("weight_zero_point", required=False)
            if zp is not None:
                _copy_checked(self.weight_zero_point, zp, prefix + "weight_zero_point")  # type: ignore[attr-defined]
            else:
                self.weight_zero_point.zero_()  # type: ignore[attr-defined]
            bias = self._parameters.get("bias_float")  # type: ignore[attr-defined]
            if bias is not None:
                _copy_checked(bias, take("bias"), prefix + "bias")
            if self.act_spec is not None and self.act_spec.mode == "static":
                _copy_checked(self.input_scale, take("input_scale"), prefix + "input_scale")  # type: ignore[attr-defined]
                _copy_checked(self.input_zero_point, take("input_zero_point"), prefix + "input_zero_point")  # type: ignore[attr-defined]
            if "output_scale" in self._buffers:  # type: ignore[attr-defined]
                _copy_checked(self.output_scale, take("output_scale"), prefix + "output_scale")  # type: ignore[attr-defined]
                _copy_checked(self.output_zero_point, take("output_zero_point"), prefix + "output_zero_point")  # type: ignore[attr-defined]
            if split is not None:
                _copy_checked(self.input_split, split, prefix + "input_split")  # type: ignore[attr-defined]
                main, extra = split_multipliers(stored_shape[1], self.input_split)  # type: ignore[attr-defined]
                self._split_mult_main.copy_(main)  # type: ignore[attr-defined]
                self._split_mult_extra.copy_(extra)  # type: ignore[attr-defined]
        rest = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)
                and k[len(prefix):] not in ("weight_packed", "weight_scale", "weight_zero_point", "bias", "input_scale",
                                            "input_zero_point", "input_split", "output_scale", "output_zero_point")}
        if rest:
            missing, unexpected = self.load_state_dict(rest, strict=False)  # type: ignore[attr-defined]
            if unexpected:
                raise ArtifactError(f"layer {prefix[:-1]!r}: unexpected stored tensors {unexpected}.")
        self.__dict__.pop("_weight_cache", None)

    def extra_repr(self) -> str:
        base = super().extra_repr()  # type: ignore[misc]
        g = self.weight_spec.granularity
        act = f", act={self.act_spec.mode}{self.act_spec.bits}" if self.act_spec else ""
        split = self._buffers.get("input_split")  # type: ignore[attr-defined]
        split_note = f", split_channels={split.numel()}" if split is not None else ""
        return f"{base}, w{self.weight_spec.bits} {g.kind}{act}{split_note}"


def _copy_checked(target: Tensor, value: Tensor | None, key: str) -> None:
    if value is None:
        raise ArtifactError(f"packed tensor {key!r} is missing.")
    if tuple(value.shape) != tuple(target.shape):
        raise ArtifactError(f"packed tensor {key!r} has shape {list(value.shape)}, expected {list(target.shape)}.")
    target.copy_(value.to(target.dtype))


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


def _plain_copy(module: nn.Module) -> nn.Module:
    """A deep copy with parametrizations (e.g. pruning masks) baked into plain weights."""
    from torchslim.graph.surgery import bake_parametrization

    new = copy.deepcopy(module)
    if parametrize.is_parametrized(new):
        for name in list(new.parametrizations.keys()):  # type: ignore[union-attr]
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
    return new, type(new), weight, bias


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
) -> nn.Module:
    """A ``Quantized<Class>`` copy of `module` with the given weight codes and parameters.

    `bias` replaces the layer's bias (e.g. after bias correction). `output_qparams` (scale, int8
    zero point) quantizes the layer's output to 8 bits as well (static inputs only). `split_channels` (Linear only)
    lists the input channels that get an extra copy (outlier channel splitting, see
    :func:`torchslim.quantization.ptq.outlier_split`); `codes` then has one column per copy
    appended after the original ``in_features`` columns. `module` is not changed.
    """
    new, base, weight, old_bias = _detached_copy(module)
    expected = tuple(weight.shape)
    split = None
    if split_channels is not None and split_channels.numel():
        if not isinstance(module, nn.Linear):
            raise ModelError(f"outlier channel splitting applies to Linear layers, not {type(module).__name__}.")
        split = split_channels
        if split.dtype != torch.int64 or split.dim() != 1 or split.requires_grad:
            split = split.detach().to(torch.int64).reshape(-1)  # else used as is: layers may share it
        if int(split.min()) < 0 or int(split.max()) >= weight.shape[1]:
            raise ModelError(f"split channel index out of range [0, {weight.shape[1]}).")
        expected = (weight.shape[0], weight.shape[1] + split.numel())
    if tuple(codes.shape) != expected:
        raise ModelError(f"weight codes {list(codes.shape)} do not match the weight {list(expected)}.")
    new.__class__ = quantized_class(base)
    new.weight_spec = weight_spec  # type: ignore[attr-defined]
    new.act_spec = act_spec  # type: ignore[attr-defined]
    param_shape = weight_spec.granularity.param_shape(expected)
    new.register_buffer("weight_q", codes.detach().to(torch.int8).clone())
    new.register_buffer("weight_scale", scale.detach().to(torch.float32).reshape(param_shape).clone())
    new.register_buffer("weight_zero_point", zero_point.detach().to(torch.int8).reshape(param_shape).clone())
    if bias is None:
        bias = old_bias
    new.register_parameter("bias_float", None if bias is None else nn.Parameter(bias.detach().clone().to(weight.dtype)))
    if act_spec is not None and act_spec.mode == "static":
        if input_scale is None or input_zero_point is None:
            raise ModelError("static activation quantization needs input_scale and input_zero_point.")
        new.register_buffer("input_scale", torch.as_tensor(input_scale, dtype=torch.float32).reshape(()).clone())
        new.register_buffer("input_zero_point", torch.as_tensor(input_zero_point).to(torch.int8).reshape(()).clone())
    if output_qparams is not None:
        if act_spec is None or act_spec.mode != "static":
            raise ModelError("output quantization needs static input quantization.")
        out_scale, out_zp = output_qparams
        new.register_buffer("output_scale", torch.as_tensor(out_scale, dtype=torch.float32).reshape(()).clone())
        new.register_buffer("output_zero_point", torch.as_tensor(out_zp).to(torch.int8).reshape(()).clone())
    if split is not None:
        main, extra = split_multipliers(weight.shape[1], split)
        new.register_buffer("input_split", split)
        new.register_buffer("_split_mult_main", main, persistent=False)
        new.register_buffer("_split_mult_extra", extra, persistent=False)
    new.weight_bits = weight_spec.bits  # type: ignore[attr-defined]
    new.activation_bits = act_spec.bits if act_spec is not None else 32  # type: ignore[attr-defined]
    new.__dict__.pop("_weight_cache", None)
    return new


def empty_quantized(module: nn.Module, layout: dict[str, Any]) -> nn.Module:
    """A quantized layer with the structure recorded in `layout` (zeros; weights come from an artifact)."""
    if type(module).__name__ != layout.get("class"):
        raise ArtifactError(f"plan expects a {layout.get('class')}, the rebuilt model has a {type(module).__name__}.")
    spec = WeightSpec.from_dict(layout["weight"])
    act = ActivationSpec.from_dict(layout.get("activation"))
    shape = tuple(module.weight.shape)
    split = int(layout.get("split_channels", 0) or 0)
    if split < 0 or (split and not isinstance(module, nn.Linear)):
        raise ArtifactError(f"plan: split_channels={split} is not valid for a {type(module).__name__}.")
    if split:
        shape = (shape[0], shape[1] + split)
    if list(shape) != list(layout.get("weight_shape", shape)):
        raise ArtifactError(f"plan expects weight shape {layout.get('weight_shape')}, the rebuilt layer has {list(shape)}.")
    param_shape = spec.granularity.param_shape(shape)
    return quantize_module(
        module,
        weight_spec=spec,
        codes=torch.zeros(shape, dtype=torch.int8),
        scale=torch.ones(param_shape),
        zero_point=torch.zeros(param_shape, dtype=torch.int8),
        act_spec=act,
        input_scale=1.0 if act is not None and act.mode == "static" else None,
        input_zero_point=0 if act is not None and act.mode == "static" else None,
        split_channels=torch.zeros(split, dtype=torch.int64) if split else None,
        output_qparams=(1.0, 0) if layout.get("output_quantized") else None,
    )


# ----------------------------------------------------------------------------------------------
# quantization-aware training

class LSQQuantizer(nn.Module):
    """Fake quantizer with a learned step size (LSQ, Esser et al. 2020) and a fixed zero point.

    ``scale`` is a parameter of :meth:`Granularity.param_shape`; its gradient is scaled by
    ``1 / sqrt(N * qmax)``. Kept positive by :meth:`clamp_` after each optimizer step.
    """

    def __init__(self, scale: Tensor, zero_point: Tensor, *, bits: int, granularity: Granularity, learn: bool = True) -> None:
        super().__init__()
        self.bits = check_bits(bits)
        self.granularity = granularity
        self.scale = nn.Parameter(scale.detach().clone().float(), requires_grad=learn)
        self.register_buffer("zero_point", zero_point.detach().clone().to(torch.int32))

    def forward(self, x: Tensor) -> Tensor:
        return lsq_fake_quantize(x, self.scale, self.zero_point, bits=self.bits, granularity=self.granularity)

    @torch.no_grad()
    def clamp_(self, eps: float = 1e-8) -> None:
        self.scale.abs_().clamp_(min=eps)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, {self.granularity.kind}"


class FakeQuantMixin:
    """Mixed into ``FakeQuant<Class>``: ``self.weight`` is the LSQ fake-quantized ``weight_float``
    and the input goes through ``input_quantizer`` when there is one."""

    _torchslim_float_class: type
    weight_spec: WeightSpec
    act_spec: ActivationSpec | None

    @property
    def weight(self) -> Tensor:  # type: ignore[override]
        return self.weight_quantizer(self.masked_weight_float())  # type: ignore[attr-defined]

    def masked_weight_float(self) -> Tensor:
        """``weight_float``, times the pruning mask the layer came with (``weight_keep``), so QAT never
        revives a pruned weight (its gradient through the mask is zero)."""
        keep = getattr(self, "weight_keep", None)
        w = self.weight_float  # type: ignore[attr-defined]
        return w if keep is None else w * keep

    @property
    def bias(self) -> Tensor | None:  # type: ignore[override]
        """The float bias; with static input quantization rounded (straight-through) to the int32
        grid ``s_in * s_w`` an integer kernel uses, exactly as the converted layer does."""
        b = self._parameters.get("bias_float")  # type: ignore[attr-defined]
        if b is None or self.act_spec is None or self.act_spec.mode != "static":
            return b
        g = self.weight_spec.granularity
        if not g.per_output_channel(self.weight_float.shape):  # type: ignore[attr-defined]
            return b
        s_w = self.weight_quantizer.scale.detach().abs().clamp(min=1e-8)  # type: ignore[attr-defined]
        s_in = self.input_quantizer.scale.detach().abs().clamp(min=1e-8)  # type: ignore[attr-defined]
        step = (s_in * s_w).reshape(-1).expand(b.shape[0])
        return b + (torch.round(b / step) * step - b).detach()

    def forward(self, input: Tensor, *args: Any, **kwargs: Any) -> Tensor:  # noqa: A002
        spec = self.act_spec
        if spec is not None and isinstance(input, Tensor) and input.is_floating_point():
            if spec.mode == "dynamic":
                input = dynamic_fake_quantize(input, spec.granularity == "per_token")
            else:
                input = self.input_quantizer(input)  # type: ignore[attr-defined]
        return super().forward(input, *args, **kwargs)  # type: ignore[misc]

    def clamp_scales_(self) -> None:
        self.weight_quantizer.clamp_()  # type: ignore[attr-defined]
        if getattr(self, "input_quantizer", None) is not None:
            self.input_quantizer.clamp_()  # type: ignore[attr-defined]


def fake_quant_class(base: type) -> type:
    """The generated ``FakeQuant<base>`` class (cached)."""
    return _generated("FakeQuant", FakeQuantMixin, base, _FAKE_QUANT_CLASSES)


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
) -> nn.Module:
    """A ``FakeQuant<Class>`` copy of `module` for QAT; its float weight and bias stay trainable."""
    masked = parametrize.is_parametrized(module, "weight")
    new, base, weight, bias = _detached_copy(module)
    new.__class__ = fake_quant_class(base)
    new.weight_spec = weight_spec  # type: ignore[attr-defined]
    new.act_spec = act_spec  # type: ignore[attr-defined]
    new.register_parameter("weight_float", nn.Parameter(weight.detach().clone()))
    new.register_parameter("bias_float", None if bias is None else nn.Parameter(bias.detach().clone()))
    if masked:  # a pruning mask (parametrization): keep its zeros through QAT
        new.register_buffer("weight_keep", (weight.detach() != 0).to(weight.dtype))
    new.weight_quantizer = LSQQuantizer(  # type: ignore[attr-defined]
        weight_scale.reshape(weight_spec.granularity.param_shape(weight.shape)), weight_zero_point,
        bits=weight_spec.bits, granularity=weight_spec.granularity, learn=learn_scales,
    )
    if act_spec is not None and act_spec.mode == "static":
        if input_scale is None or input_zero_point is None:
            raise ModelError("static activation quantization needs input_scale and input_zero_point.")
        new.input_quantizer = LSQQuantizer(  # type: ignore[attr-defined]
            torch.as_tensor(input_scale, dtype=torch.float32).reshape(()), torch.as_tensor(input_zero_point).reshape(()),
            bits=act_spec.bits, granularity=Granularity.per_tensor(), learn=learn_scales,
        )
    new.weight_bits = weight_spec.bits  # type: ignore[attr-defined]
    new.activation_bits = act_spec.bits if act_spec is not None else 32  # type: ignore[attr-defined]
    return new


def convert_fake_quant(module: nn.Module) -> nn.Module:
    """The ``Quantized<Class>`` layer a trained ``FakeQuant<Class>`` stands for (same outputs)."""
    if not isinstance(module, FakeQuantMixin):
        raise ModelError(f"{type(module).__name__} is not a fake-quantized layer.")
    from torchslim.quantization.functional import quantize

    spec = module.weight_spec
    wq_mod: LSQQuantizer = module.weight_quantizer  # type: ignore[attr-defined]
    scale = wq_mod.scale.detach().abs().clamp(min=1e-8)
    zp = wq_mod.zero_point
    weight = module.masked_weight_float().detach()
    codes = quantize(weight, scale, zp, bits=spec.bits, granularity=spec.granularity)
    shell = _float_shell(module, weight)
    input_scale = input_zp = None
    if module.act_spec is not None and module.act_spec.mode == "static":
        iq: LSQQuantizer = module.input_quantizer  # type: ignore[attr-defined]
        input_scale, input_zp = iq.scale.detach().abs().clamp(min=1e-8), iq.zero_point
    return quantize_module(
        shell, weight_spec=spec, codes=codes, scale=scale, zero_point=zp,
        act_spec=module.act_spec, input_scale=input_scale, input_zero_point=input_zp,
    )


def _float_shell(module: nn.Module, weight: Tensor) -> nn.Module:
    """A plain float layer of `module`'s original class with `weight` (QAT/quantized -> float)."""
    base = module._torchslim_float_class  # type: ignore[attr-defined]
    new = copy.copy(module)
    new.__dict__ = dict(module.__dict__)
    new._parameters = {k: v for k, v in module._parameters.items() if k not in ("weight_float", "bias_float")}
    new._modules = {k: v for k, v in module._modules.items() if k not in ("weight_quantizer", "input_quantizer")}
    new._buffers = {k: v for k, v in module._buffers.items() if k not in _OWN_KEYS}
    new.__dict__.pop("_weight_cache", None)
    new.__class__ = base
    new._parameters["weight"] = nn.Parameter(weight.detach().clone())
    if "bias_float" in module._parameters:
        b = module._parameters["bias_float"]
        new._parameters["bias"] = None if b is None else nn.Parameter(b.detach().clone())
    for attr in ("weight_spec", "act_spec", "weight_bits", "activation_bits"):
        new.__dict__.pop(attr, None)
    return new


def dequantize_module(module: nn.Module) -> nn.Module:
    """The float layer a quantized or fake-quantized layer simulates (weights dequantized)."""
    if isinstance(module, QuantizedMixin):
        return _float_shell(module, module.effective_weight())
    if isinstance(module, FakeQuantMixin):
        return _float_shell(module, module.weight.detach())
    raise ModelError(f"{type(module).__name__} is not a quantized layer.")
