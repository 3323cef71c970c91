"""The ONNX export form of a quantized layer (:meth:`QuantizedMixin.onnx_form`).

While a runtime backend traces the model, a quantized layer computes exactly what it computes
otherwise, but through operators that onnxruntime turns into integer kernels:
``DequantizeLinear`` on int8 weight initializers and an int32 bias, ``QuantizeLinear`` /
``DequantizeLinear`` around static inputs, the dynamic int8 MatMul pattern for dynamic inputs, a
gather of int8 rows for an Embedding, and a single-input-channel 3x3 convolution rewritten as a
2x2 convolution over four shifted input copies (:func:`shifted_conv_export`).

:func:`set_export_form` precomputes the export-only constants as temporary buffers (so they
become plain initializers) and removes them again afterwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import torch
from torch import Tensor, nn

from torchslim.core.errors import ModelError
from torchslim.quantization import pt2e_ops
from torchslim.quantization.functional import qrange
from torchslim.quantization.onnx_ops import DQExport, DynamicLinearExport

if TYPE_CHECKING:
    from torchslim.quantization.quantized import QuantizedMixin

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
EXPORT_DIALECTS = ("onnx", "pt2e")
"""``onnx``: ONNX ``QuantizeLinear`` / ``DequantizeLinear`` (the ONNX exporter's symbolic functions);
``pt2e``: PyTorch's ``quantized_decomposed`` operators, recorded by ``torch.export`` (ExecuTorch)."""
PT2E_BUFFERS = ("_pt2e_weight_scale", "_pt2e_weight_zp", "_pt2e_bias", "_pt2e_float_weight")
PT2E_QPARAMS = ("_pt2e_input", "_pt2e_output", "_pt2e_weight")
EXPORT_BUFFERS = (
    "_onnx_bias_q",
    "_onnx_bias_scale",
    "_onnx_weight_t_q",
    "_onnx_weight_scale",
    "_onnx_weight_zp",
    "_onnx_weight_colsum",
    "_onnx_split_gather",
    "_onnx_shift_weight_q",
)


def embedding_exports(layer: QuantizedMixin) -> bool:
    """True when an Embedding exports as a gather of int8 rows (padding_idx changes only gradients).

    Not for a subclass with its own ``forward`` (Hugging Face's learned-position embeddings compute
    positions from a mask, scaled word embeddings multiply the rows): a plain gather would skip it,
    so such a layer keeps its own forward over the dequantized table.
    """
    return (
        isinstance(layer, nn.Embedding)
        and not _own_embedding_forward(type(layer))
        and layer.max_norm is None
        and layer.weight_spec.granularity.per_output_channel(layer.weight_q.shape)
        and layer.integer_export()
    )


def _own_embedding_forward(cls: type) -> bool:
    """True when a class between `cls` and ``nn.Embedding`` (outside torchslim) defines ``forward``."""
    for klass in cls.__mro__:
        if klass is nn.Embedding:
            return False
        if klass.__module__.startswith("torchslim.") or not issubclass(klass, nn.Embedding):
            continue
        if "forward" in klass.__dict__:
            return True
    return False


def embedding_export(layer: QuantizedMixin, ids: Tensor) -> Tensor:
    """Gather int8 rows, then dequantize only them (ONNX: Gather, Cast, Gather, Sub, Mul): the
    table stays int8 and no inference dequantizes all of it."""
    codes = torch.nn.functional.embedding(ids, layer.weight_q).float()
    if layer.weight_spec.granularity.kind == "per_tensor":
        return (codes - layer.weight_zero_point.float()) * layer.weight_scale
    scale = torch.nn.functional.embedding(ids, layer.weight_scale.unsqueeze(1))
    if layer.weight_spec.symmetric:
        return codes * scale
    zp = torch.nn.functional.embedding(ids, layer.weight_zero_point.float().unsqueeze(1))
    return (codes - zp) * scale


def shifted_conv_export(layer: QuantizedMixin, x: Tensor) -> Tensor:
    """A 3x3 convolution of a single input channel as a 2x2 convolution of four shifted copies.

    ``y[i, j] = sum_{d, e in 0..2} w[d, e] x_pad[i + d, j + e]``; with copies
    ``x_s[i, j] = x_pad[i + s_y, j + s_x]`` for ``s in {0, 1}^2`` every tap ``d = s + k``
    (``k in {0, 1}``) has one slot, the other 7 of 16 weights are zero. The products and the
    int32 sum are the same, but onnxruntime's int8 convolution packs input channels in fours and is
    slow below that (see benchmarks/results/ for the measured effect).
    """
    conv = cast(nn.Conv2d, layer)
    pad = int(cast(tuple[int, int], conv.padding)[0])
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad)) if pad else x
    # static slice bounds (no Shape ops in the graph): rows sy .. end - (1 - sy)
    copies = torch.cat([xp[..., sy : (sy - 1) or None, sx : (sx - 1) or None] for sy in (0, 1) for sx in (0, 1)], dim=1)
    g = layer.weight_spec.granularity
    axis = -1 if g.kind == "per_tensor" else 0
    weight = DQExport.apply(
        layer._buffers["_onnx_shift_weight_q"], layer.weight_scale, layer.weight_zero_point.to(torch.int8), axis
    )
    return torch.nn.functional.conv2d(layer.quantize_input(copies), weight, layer.bias)


def shift_weight_codes(layer: QuantizedMixin) -> Tensor | None:
    """The ``[out, 4, 2, 2]`` codes of :func:`shifted_conv_export`, or None where it does not apply
    (it needs a static int8 input, one input channel, a 3x3 kernel, stride and dilation 1, zero
    padding 0 or 1, and per-tensor or per-output-channel weights)."""
    spec = layer.act_spec
    if not (
        isinstance(layer, nn.Conv2d)
        and spec is not None
        and spec.mode == "static"
        and layer.in_channels == 1
        and layer.groups == 1
        and tuple(layer.kernel_size) == (3, 3)
        and tuple(layer.stride) == (1, 1)
        and tuple(layer.dilation) == (1, 1)
        and layer.padding_mode == "zeros"
        and isinstance(layer.padding, tuple)
        and layer.padding[0] == layer.padding[1]
        and layer.padding[0] in (0, 1)
        and layer.weight_spec.granularity.per_output_channel(layer.weight_q.shape)
    ):
        return None
    wq = layer.weight_q
    zp = layer.weight_zero_point.to(wq.dtype).reshape(-1, 1, 1, 1).expand(wq.shape[0], 1, 1, 1)
    codes = zp.expand(wq.shape[0], 4, 2, 2).clone()  # zero point codes dequantize to 0
    for d in range(3):
        sy, ky = (0, d) if d < 2 else (1, 1)
        for e in range(3):
            sx, kx = (0, e) if e < 2 else (1, 1)
            codes[:, sy * 2 + sx, ky, kx] = wq[:, 0, d, e]
    return codes


def dynamic_linear_export(layer: QuantizedMixin, x: Tensor, *, gather: Tensor | None = None) -> Tensor:
    """A dynamic-input Linear as onnxruntime's dynamic int8 MatMul pattern."""
    b = layer._buffers
    spec = layer.act_spec
    per_token = spec is not None and spec.granularity == "per_token"
    result: Tensor = DynamicLinearExport.apply(
        x,
        b["_onnx_weight_t_q"],
        b["_onnx_weight_scale"],
        b["_onnx_weight_zp"],
        b["_onnx_weight_colsum"],
        layer._parameters.get("bias_float"),
        per_token,
        gather,
    )
    return result


def _dynamic_buffers(layer: QuantizedMixin, buffers: dict[str, Tensor | None]) -> None:
    spec = layer.act_spec
    g = layer.weight_spec.granularity
    if not g.per_output_channel(layer.weight_q.shape):
        raise ModelError(
            "dynamic ONNX export needs per-tensor or per-output-channel (axis 0) weights, "
            f"not {g.kind} on axis {g.axis}."
        )
    wq = layer.weight_q
    out_features = wq.shape[0]
    buffers["_onnx_weight_t_q"] = wq.t().contiguous()
    buffers["_onnx_weight_scale"] = layer.weight_scale.reshape(-1).expand(out_features).contiguous().clone()
    zp = layer.weight_zero_point.reshape(-1).expand(out_features).contiguous().clone()
    buffers["_onnx_weight_zp"] = zp
    buffers["_onnx_weight_colsum"] = (wq.float() - zp.float()[:, None]).sum(dim=1)
    split = buffers.get("input_split")
    if split is not None and split.numel() and spec is not None and spec.granularity == "per_tensor":
        # the copies of a split channel equal its scaled original, so quantizing first and copying
        # the uint8 codes (Gather + Concat) gives the same codes as copying floats
        buffers["_onnx_split_gather"] = split.long().clone()


def set_export_form(layer: QuantizedMixin, enabled: bool, *, dialect: str = "onnx") -> None:
    """Enable (precompute the export-only buffers) or disable (remove them) the export form of
    `dialect` (:data:`EXPORT_DIALECTS`)."""
    if dialect not in EXPORT_DIALECTS:
        raise ModelError(f"export dialect must be one of {EXPORT_DIALECTS}, not {dialect!r}.")
    buffers = layer._buffers
    for key in (*EXPORT_BUFFERS, *PT2E_BUFFERS):
        buffers.pop(key, None)
    for key in PT2E_QPARAMS:
        layer.__dict__.pop(key, None)
    layer.__dict__["_onnx_export"] = bool(enabled)
    layer.__dict__["_pt2e_export"] = bool(enabled) and dialect == "pt2e"
    if not enabled:
        return
    if dialect == "pt2e":
        _pt2e_constants(layer)
        return
    with torch.no_grad():
        b = layer._parameters.get("bias_float")
        bias_scale = layer.bias_scale()
        if b is not None and bias_scale is not None:
            buffers["_onnx_bias_q"] = torch.clamp(torch.round(b / bias_scale), INT32_MIN, INT32_MAX).to(torch.int32)
            buffers["_onnx_bias_scale"] = bias_scale.clone()
        shift_codes = shift_weight_codes(layer)
        if shift_codes is not None:
            buffers["_onnx_shift_weight_q"] = shift_codes
        spec = layer.act_spec
        if spec is not None and spec.mode == "dynamic" and isinstance(layer, nn.Linear):
            _dynamic_buffers(layer, buffers)


def _activation_qparams(scale: Tensor, zero_point: Tensor, bits: int) -> tuple[float, int, int, int]:
    qmin, qmax = qrange(bits)
    return float(scale.reshape(())), int(zero_point.reshape(())), qmin, qmax


def _pt2e_constants(layer: QuantizedMixin) -> None:
    """The ``pt2e`` form's constants: activation quantization parameters as Python numbers (constants
    of the exported program), per-channel weight scales and zero points as buffers, and the bias
    rounded to the int32 grid of ``s_in * s_w`` (what the integer kernel adds)."""
    buffers, spec = layer._buffers, layer.act_spec
    if spec is not None and spec.mode == "static":
        layer.__dict__["_pt2e_input"] = _activation_qparams(layer.input_scale, layer.input_zero_point, spec.bits)
    if "output_scale" in buffers:
        layer.__dict__["_pt2e_output"] = _activation_qparams(layer.output_scale, layer.output_zero_point, 8)
    if layer.weight_spec.granularity.kind == "per_tensor":
        layer.__dict__["_pt2e_weight"] = (
            float(layer.weight_scale.reshape(())),
            int(layer.weight_zero_point.reshape(())),
        )
    with torch.no_grad():
        if not layer.integer_export():  # per group, k-means, power of two: a float constant
            buffers["_pt2e_float_weight"] = layer._dequantized_weight().detach().clone()
        elif layer.weight_spec.granularity.kind != "per_tensor":
            buffers["_pt2e_weight_scale"] = layer.weight_scale.reshape(-1).float().clone()
            buffers["_pt2e_weight_zp"] = layer.weight_zero_point.reshape(-1).to(torch.int64).clone()
        b = layer._parameters.get("bias_float")
        bias_scale = layer.bias_scale()
        if b is not None:
            rounded = b if bias_scale is None else torch.round(b / bias_scale) * bias_scale
            buffers["_pt2e_bias"] = rounded.detach().clone()


def pt2e_weight(layer: QuantizedMixin) -> Tensor:
    """The ``pt2e`` form of a weight: ``dequantize_per_channel`` (or per tensor) on integer codes, the
    dequantized weight as a constant otherwise (so XNNPACK's float kernel takes it).

    Declared as 8-bit codes whatever the layer's bits (codes of fewer bits are 8-bit codes too):
    XNNPACK reads a narrower range as its 4-bit weight format, which it has for linear layers with
    dynamic inputs only (a 4-bit convolution failed to lower), while its int8 kernels take them all."""
    float_weight = layer._buffers.get("_pt2e_float_weight")
    if float_weight is not None:
        return float_weight
    g = layer.weight_spec.granularity
    qmin, qmax = qrange(8)
    if g.kind == "per_tensor":
        scale, zero_point = layer.__dict__["_pt2e_weight"]
        return pt2e_ops.dequantize_weight_per_tensor(layer.weight_q, scale, zero_point, qmin, qmax)
    axis = g.check(layer.weight_q.shape)
    return pt2e_ops.dequantize_weight(layer.weight_q, layer._pt2e_weight_scale, layer._pt2e_weight_zp, axis, qmin, qmax)


def pt2e_dynamic_input(x: Tensor) -> Tensor:
    """The ``pt2e`` form of a per-token dynamic int8 input (XNNPACK's dynamic int8 pattern)."""
    return pt2e_ops.qdq_per_token_dynamic(x)


def pt2e_activation(layer: QuantizedMixin, x: Tensor, which: str) -> Tensor | None:
    """The ``pt2e`` form of the layer's `which` (``"input"`` / ``"output"``) quantizer on `x`, or
    None where that quantizer is not static."""
    qparams = layer.__dict__.get(f"_pt2e_{which}")
    return None if qparams is None else pt2e_ops.qdq_per_tensor(x, *qparams)


__all__ = [
    "EXPORT_BUFFERS",
    "EXPORT_DIALECTS",
    "pt2e_activation",
    "pt2e_dynamic_input",
    "pt2e_weight",
    "dynamic_linear_export",
    "embedding_export",
    "set_export_form",
    "shift_weight_codes",
    "shifted_conv_export",
]
