"""The PyTorch 2 export (PT2E) form of quantization: ``quantized_decomposed`` operators.

``torch.export`` records these operators as they are, and ExecuTorch's XNNPACK partitioner turns a
``dequantize -> conv / linear (on a dequantized int8 weight) -> [ReLU] -> quantize`` group into one
int8 kernel (as onnxruntime fuses ``DequantizeLinear -> Conv -> QuantizeLinear`` into
``QLinearConv``). The operators compute

* ``quantize_per_tensor``: ``q = clamp(round(x * (1 / s)) + z, qmin, qmax)`` (int8 codes);
* ``dequantize_per_tensor``: ``x' = (q - z) * s``;
* ``dequantize_per_channel``: ``w = (q - z_c) * s_c`` along one axis,

which is torchslim's own simulation (:func:`~torchslim.quantization.functional.fake_quantize`) up to
``x * (1 / s)`` against ``x / s`` (a code can differ where ``x / s`` is within one float rounding of
a half-way point). Scales and zero points of activations are Python numbers here: they become
constants of the exported program, which the partitioner needs (a tensor scale reads as dynamic).
The operators are registered by PyTorch's ``torch.ao.quantization.fx._decomposed`` (the module
torchao's PT2E quantizer imports for the same purpose).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def _ops() -> Any:
    from torch.ao.quantization.fx._decomposed import quantized_decomposed_lib  # noqa: F401  (registers the ops)

    return torch.ops.quantized_decomposed


def qdq_per_tensor(x: Tensor, scale: float, zero_point: int, qmin: int, qmax: int) -> Tensor:
    """``dequantize(quantize(x))`` per tensor on int8 codes in ``[qmin, qmax]``."""
    ops = _ops()
    q = ops.quantize_per_tensor.default(x, scale, zero_point, qmin, qmax, torch.int8)
    result: Tensor = ops.dequantize_per_tensor.default(q, scale, zero_point, qmin, qmax, torch.int8)
    return result


def qdq_per_token_dynamic(x: Tensor) -> Tensor:
    """``dequantize(quantize(x))`` with each row's (token's) own int8 range, chosen at run time
    (XNNPACK's dynamic int8 rule: ``s = (max(0, max) - min(0, min)) / 255``, the zero point from the
    end with the smaller error); the pattern XNNPACK runs as its dynamic int8 linear kernel."""
    ops = _ops()
    scales, zero_points = ops.choose_qparams_per_token_asymmetric.default(x, torch.int8)
    q = ops.quantize_per_token.default(x, scales, zero_points, -128, 127, torch.int8)
    result: Tensor = ops.dequantize_per_token.default(q, scales, zero_points, -128, 127, torch.int8, x.dtype)
    return result


def dequantize_weight(codes: Tensor, scale: Tensor, zero_point: Tensor, axis: int, qmin: int, qmax: int) -> Tensor:
    """Dequantized int8 weight codes, one scale and zero point per index of `axis`."""
    result: Tensor = _ops().dequantize_per_channel.default(codes, scale, zero_point, axis, qmin, qmax, torch.int8)
    return result


def dequantize_weight_per_tensor(codes: Tensor, scale: float, zero_point: int, qmin: int, qmax: int) -> Tensor:
    """Dequantized int8 weight codes with one scale and zero point (Python numbers: program constants)."""
    result: Tensor = _ops().dequantize_per_tensor.default(codes, scale, zero_point, qmin, qmax, torch.int8)
    return result


__all__ = [
    "qdq_per_token_dynamic",
    "dequantize_weight",
    "dequantize_weight_per_tensor",
    "qdq_per_tensor",
]
