"""Autograd functions whose ``symbolic`` emits ONNX quantization operators, and dynamic quantization.

* :class:`QDQExport` - ``QuantizeLinear -> DequantizeLinear`` on an activation (static inputs and
  int8 outputs);
* :class:`DQExport` - ``DequantizeLinear`` on integer initializers (weights, int32 biases);
* :class:`DynamicLinearExport` - a Linear layer with a dynamically quantized input, as the pattern
  onnxruntime fuses into ``DynamicQuantizeMatMul`` (per tensor) or with per-row ranges (per token);
* :func:`dynamic_quantize_reference` / :func:`dynamic_fake_quantize` - the same dynamic uint8
  quantization in PyTorch (ONNX ``DynamicQuantizeLinear``).

Their forward passes compute exactly what the exported graph computes, so the PyTorch model and the
onnxruntime session agree.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from torchslim.core.errors import ModelError
from torchslim.quantization.functional import fake_quantize, qrange

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
    def forward(ctx: Any, x: Tensor, per_token: bool) -> Tensor:
        q, scale, zp = dynamic_quantize_reference(x, per_token)
        if per_token:
            rows = q.reshape(-1, x.shape[-1])
            return ((rows - zp) * scale).reshape(x.shape).to(x.dtype)
        return ((q - zp) * scale).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


def dynamic_fake_quantize(x: Tensor, per_token: bool = False) -> Tensor:
    """Simulate dynamic uint8 quantization of `x` (per tensor or per token; straight-through gradient)."""
    return _DynamicFakeQuant.apply(x, bool(per_token))


# ----------------------------------------------------------------------------------------------
# ONNX export: autograd Functions whose `symbolic` emits QuantizeLinear / DequantizeLinear


class QDQExport(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: Tensor, zero_point: Tensor, bits: int) -> Tensor:
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
            zp_u8 = g.op(
                "Cast", g.op("Add", as_int, g.op("Constant", value_t=torch.tensor(128, dtype=torch.int32))), to_i=2
            )  # UINT8
            return g.op("DequantizeLinear", g.op("QuantizeLinear", x, scale, zp_u8), scale, zp_u8)
        q = g.op("QuantizeLinear", x, scale, zero_point)
        if (qmin, qmax) != (-128, 127):
            lo = g.op("Constant", value_t=torch.tensor(qmin, dtype=torch.int8))
            hi = g.op("Constant", value_t=torch.tensor(qmax, dtype=torch.int8))
            q = g.op("Clip", q, lo, hi)
        return g.op("DequantizeLinear", q, scale, zero_point)


class DQExport(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, q: Tensor, scale: Tensor, zero_point: Tensor | None, axis: int) -> Tensor:
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


class DynamicLinearExport(torch.autograd.Function):
    """``y = x W^T + b`` with dynamically quantized `x`.

    Per tensor: onnxruntime's dynamic int8 pattern (DynamicQuantizeLinear, MatMulInteger, Cast, Mul,
    Add), which it fuses to DynamicQuantizeMatMul. Per token: ReduceMin / ReduceMax per row, a
    per-axis uint8 QuantizeLinear, MatMulInteger (u8 x s8, int32 accumulation) and the zero-point
    correction ``acc - z_row * colsum(W_q - z_w)`` (onnxruntime's MatMulInteger takes only a scalar
    zero point for its first input), then ``* s_row * s_w + b``.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        weight_t_q: Tensor,
        w_scale: Tensor,
        w_zp: Tensor,
        colsum: Tensor,
        bias: Tensor | None,
        per_token: bool,
        gather: Tensor | None = None,
    ) -> Tensor:
        w = (weight_t_q.float() - w_zp.float()) * w_scale
        xq = dynamic_fake_quantize(x, per_token)
        if gather is not None:
            xq = torch.cat([xq, xq.index_select(-1, gather)], dim=-1)
        y = xq @ w
        return y + bias if bias is not None else y

    @staticmethod
    def symbolic(
        g: Any,
        x: Any,
        weight_t_q: Any,
        w_scale: Any,
        w_zp: Any,
        colsum: Any,
        bias: Any,
        per_token: bool,
        gather: Any = None,
    ) -> Any:
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
        lead = g.op(
            "Slice", g.op("Shape", x), const([0], torch.int64), const([-1], torch.int64), const([0], torch.int64)
        )
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


def is_fx_tracing() -> bool:
    import torch.fx._symbolic_trace as symbolic_trace

    check = getattr(symbolic_trace, "is_fx_symbolic_tracing", None) or getattr(symbolic_trace, "is_fx_tracing", None)
    return bool(check()) if check is not None else False


__all__ = [
    "DQExport",
    "DynamicLinearExport",
    "QDQExport",
    "TINY_SCALE",
    "dynamic_fake_quantize",
    "dynamic_quantize_reference",
    "is_fx_tracing",
]
