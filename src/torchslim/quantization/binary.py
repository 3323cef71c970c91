"""Binary and ternary weights: the level types ``binary`` ``{-a, +a}`` and ``ternary`` ``{-a, 0, +a}``.

Both are registered in :data:`~torchslim.quantization.levels.LEVELS`, so a
:class:`~torchslim.quantization.specs.WeightSpec` names them (``levels: binary`` with 1 bit,
``levels: ternary`` with 2 bits) and the quantized layer stores their codes packed 8 (binary) or
4 (ternary) to a byte. Codes are signed integers with zero point 0, ``x_hat = a * q``, so the
ordinary dequantization (and ONNX ``DequantizeLinear``) computes them exactly.

**Binary** (BinaryConnect, Courbariaux, Bengio & David 2015; BNN, Hubara, Courbariaux et al. 2016)::

    q = sign(w) in {-1, +1}   (sign(0) = +1)
    a = mean(|w|) per output channel          (XNOR-Net, Rastegari et al. 2016, eq. 4: the L2-optimal a)
    w_hat = a q
    dL/dw = dL/dw_hat * a * 1{|w| <= c}       (straight-through estimator with clipping at c = 1;
                                                Hubara et al. 2016, section 1.3; plus the gradient
                                                through a = mean|w|, as XNOR-Net)

**Ternary** (TWN, Li, Zhang & Liu 2016, eq. 8-10)::

    delta = 0.7 mean(|w|) per output channel (the approximate optimum for Gaussian / uniform weights)
    q = sign(w) 1{|w| > delta} in {-1, 0, +1}
    a = mean(|w| over |w| > delta)                              (the L2-optimal a for this q)

and with trained scales (TTQ, Zhu, Han, Mao & Dally 2017, eq. 6-8): ``w_hat = a_p 1{w > delta} -
a_n 1{w < -delta}`` with two learned scales per output channel (initialised as above on each sign's
side) and the gradients ``dL/da_p = sum_{I_p} g``, ``dL/da_n = -sum_{I_n} g``, ``dL/dw = a_p g`` on
``I_p``, ``g`` on ``I_0``, ``a_n g`` on ``I_n`` (``g = dL/dw_hat``).

Both level types fit their scale to the weight itself (``fit``, see
:func:`~torchslim.quantization.levels.fit_levels`), and their codes depend on the weight alone
(``sign``, TWN's threshold), so a :class:`~torchslim.quantization.quantizer.WeightQuantizer` of them
needs no range estimator::

    WeightQuantizer(TernaryLevels(bits=2), Granularity.per_channel(0))   # TWN codes, scale, zero point
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from torchslim.core.errors import ConfigError
from torchslim.quantization.functional import (
    EPS,
    Granularity,
    as_granularity,
    binary_scale,
    choose_qparams,
    dequantize,
)
from torchslim.quantization.levels import register_levels

TWN_THRESHOLD = 0.7
"""TWN's threshold factor: ``delta = 0.7 mean(|w|)`` (Li et al. 2016, eq. 10)."""


# ---- pure math ---------------------------------------------------------------------------------
def _row_mean(values: Tensor, weights: Tensor) -> Tensor:
    """Per row, ``sum(values * weights) / sum(weights)`` (0 where a row has no weight)."""
    return (values * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def sign_codes(x: Tensor) -> Tensor:
    """``sign(x)`` in ``{-1, +1}`` as int8 (0 maps to +1)."""
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x)).to(torch.int8)


def ternary_threshold(x: Tensor, granularity: Granularity | None = None, *, factor: float = TWN_THRESHOLD) -> Tensor:
    """TWN's ``delta = factor * mean(|x|)`` per granularity row (shaped as its parameters)."""
    g = as_granularity(granularity)
    rows = g.rows(x.detach().abs())
    ones = g.rows(torch.ones_like(x))  # per group: padding does not pull the mean down
    return (factor * _row_mean(rows, ones)).reshape(g.param_shape(x.shape))


def ternary_codes(x: Tensor, threshold: Tensor, granularity: Granularity | None = None) -> Tensor:
    """``sign(x) 1{|x| > threshold}`` in ``{-1, 0, +1}`` as int8 (`threshold` per granularity row)."""
    g = as_granularity(granularity)
    delta = g.expand(threshold.to(x.dtype), x.shape)
    codes = torch.where(x > delta, 1, torch.where(x < -delta, -1, 0))
    return codes.to(torch.int8)


def ternary_scales(x: Tensor, codes: Tensor, granularity: Granularity | None = None) -> tuple[Tensor, Tensor]:
    """``(a_p, a_n)``: the mean of ``|x|`` where the code is +1, and where it is -1, per row.

    A row with no such code gets the other side's scale (or ``EPS`` when it has none at all).
    """
    g = as_granularity(granularity)
    rows, q = g.rows(x.detach().abs().float()), g.rows(codes.float())
    positive = _row_mean(rows, (q > 0).float())
    negative = _row_mean(rows, (q < 0).float())
    positive = torch.where(positive > 0, positive, negative)
    negative = torch.where(negative > 0, negative, positive)
    shape = g.param_shape(x.shape)
    return positive.clamp(min=EPS).reshape(shape), negative.clamp(min=EPS).reshape(shape)


def twn_quantize(
    x: Tensor, granularity: Granularity | None = None, *, factor: float = TWN_THRESHOLD
) -> tuple[Tensor, Tensor]:
    """TWN: ``(codes, a)`` with ``a`` the mean of ``|x|`` over the non-zero codes, per row."""
    g = as_granularity(granularity)
    codes = ternary_codes(x, ternary_threshold(x, g, factor=factor), g)
    rows, nonzero = g.rows(x.detach().abs().float()), g.rows(codes.float()).abs()
    scale = _row_mean(rows, nonzero).clamp(min=EPS).reshape(g.param_shape(x.shape))
    return codes, scale


def clipped_identity(x: Tensor, clip: float | None) -> Tensor:
    """``x`` in the forward pass; gradient ``1{|x| <= clip}`` (all ones when `clip` is None)."""
    if clip is None:
        return x
    inside = (x.detach().abs() <= clip).to(x.dtype)
    return x * inside + (x * (1 - inside)).detach()


def binary_fake_quantize(w: Tensor, granularity: Granularity | None = None, *, clip: float | None = 1.0) -> Tensor:
    """XNOR-Net / BNN training weight: ``mean(|w|) sign(w)`` per row; sign with the clipped
    straight-through gradient ``1{|w| <= clip}``, and the gradient through the scale."""
    g = as_granularity(granularity)
    rows = g.rows(w)
    ones = g.rows(torch.ones_like(w))
    scale = _row_mean(rows.abs(), ones).clamp(min=EPS).reshape(-1, 1)
    hard = sign_codes(rows.detach()).to(w.dtype)
    passed = clipped_identity(rows, clip)
    signs = hard + (passed - passed.detach())  # value sign(w), gradient 1{|w| <= clip}
    return g.unrows(scale * signs, w.shape)


def ternary_fake_quantize(
    w: Tensor, granularity: Granularity | None = None, *, factor: float = TWN_THRESHOLD, clip: float | None = 1.0
) -> Tensor:
    """TWN training weight: ``a * ternary(w)`` (threshold and scale recomputed from `w`), with the
    straight-through gradient ``a 1{|w| <= clip}`` for `w` and the gradient through ``a``."""
    g = as_granularity(granularity)
    codes, _ = twn_quantize(w, g, factor=factor)
    rows, q = g.rows(w), g.rows(codes.to(w.dtype))
    scale = _row_mean(rows.abs(), q.abs()).clamp(min=EPS).reshape(-1, 1)
    passed = clipped_identity(rows, clip)
    straight = q + (passed - passed.detach())  # value q, gradient of the clipped identity
    return g.unrows(scale * straight, w.shape)


def ttq_fake_quantize(
    w: Tensor,
    positive: Tensor,
    negative: Tensor,
    granularity: Granularity | None = None,
    *,
    factor: float = TWN_THRESHOLD,
) -> Tensor:
    """TTQ training weight ``a_p 1{w > delta} - a_n 1{w < -delta}`` with TTQ's gradients (see the
    module docstring): `positive` / `negative` (``a_p``, ``a_n``) are trained."""
    g = as_granularity(granularity)
    codes = ternary_codes(w, ternary_threshold(w, g, factor=factor), g)
    rows, q = g.rows(w), g.rows(codes.to(w.dtype))
    a_p, a_n = positive.reshape(-1, 1).to(w.dtype), negative.reshape(-1, 1).to(w.dtype)
    pos, neg = (q > 0).to(w.dtype), (q < 0).to(w.dtype)
    value = a_p * pos - a_n * neg
    grad_scale = (a_p.detach() * pos + a_n.detach() * neg + (1 - pos - neg)).detach()
    return g.unrows(value + grad_scale * (rows - rows.detach()), w.shape)


def ttq_dequantize(codes: Tensor, positive: Tensor, negative: Tensor, granularity: Granularity | None = None) -> Tensor:
    """``a_p`` where the code is +1, ``-a_n`` where it is -1, 0 elsewhere (float32)."""
    g = as_granularity(granularity)
    a_p = g.expand(positive.float(), codes.shape)
    a_n = g.expand(negative.float(), codes.shape)
    return torch.where(codes > 0, a_p, torch.where(codes < 0, -a_n, torch.zeros_like(a_p)))


# ---- level types -------------------------------------------------------------------------------
def _check_level_bits(name: str, bits: int, expected: int) -> int:
    if isinstance(bits, bool) or bits != expected:
        raise ConfigError(f"{name} levels store {expected}-bit codes; got bits={bits!r}.")
    return expected


class BinaryLevels:
    """``{-a, +a}``: codes ``sign(x)``, ``a = mean(|x|)`` per row (XNOR-Net); 1 bit per code."""

    name: ClassVar[str] = "binary"
    affine: ClassVar[bool] = True  # x_hat = a * q, zero point 0: ONNX DequantizeLinear on the codes is exact

    def __init__(self, *, bits: int = 1, symmetric: bool = True) -> None:
        self.bits = _check_level_bits("binary", bits, 1)
        self.symmetric = True

    def code_range(self) -> tuple[int, int]:
        return -1, 1

    def qparams(self, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
        """From a range alone: ``a = max(|lo|, |hi|)`` (prefer :meth:`fit`, which sees the weights)."""
        return choose_qparams(lo, hi, bits=1)

    def fit(self, x: Tensor, *, granularity: Granularity) -> tuple[Tensor, Tensor]:
        """``(scale, zero_point)``: XNOR-Net's ``a = mean(|x|)`` per row, zero point 0."""
        scale = binary_scale(x, granularity)
        return scale, torch.zeros_like(scale, dtype=torch.int32)

    def quantize(self, x: Tensor, scale: Tensor, zero_point: Tensor, *, granularity: Granularity) -> Tensor:
        return sign_codes(x)

    def dequantize(self, codes: Tensor, scale: Tensor, zero_point: Tensor, *, granularity: Granularity) -> Tensor:
        return dequantize(codes, scale, 0, granularity=granularity)

    def storage_bits(self) -> int:
        return 1

    def __repr__(self) -> str:
        return "BinaryLevels()"


class TernaryLevels:
    """``{-a, 0, +a}``: TWN codes and scale (:meth:`fit`), stored in 2 bits per code."""

    name: ClassVar[str] = "ternary"
    affine: ClassVar[bool] = True

    def __init__(self, *, bits: int = 2, symmetric: bool = True, threshold: float = TWN_THRESHOLD) -> None:
        self.bits = _check_level_bits("ternary", bits, 2)
        self.symmetric = True
        if not 0.0 <= threshold < 10.0:
            raise ConfigError(f"ternary threshold={threshold!r} must be in [0, 10) (a multiple of mean |w|).")
        self.threshold = float(threshold)

    def code_range(self) -> tuple[int, int]:
        return -1, 1

    def qparams(self, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
        """From a range alone: ``a = max(|lo|, |hi|) / 2`` (prefer :meth:`fit`, which sees the weights)."""
        scale, zero_point = choose_qparams(lo, hi, bits=2)  # max / qmax with qmax = 1
        return scale / 2, zero_point

    def fit(self, x: Tensor, *, granularity: Granularity) -> tuple[Tensor, Tensor]:
        """``(scale, zero_point)`` of TWN: ``a`` = mean of ``|x|`` above ``threshold * mean(|x|)``."""
        _, scale = twn_quantize(x.detach().float(), granularity, factor=self.threshold)
        return scale, torch.zeros_like(scale, dtype=torch.int32)

    def quantize(self, x: Tensor, scale: Tensor, zero_point: Tensor, *, granularity: Granularity) -> Tensor:
        """TWN's codes ``sign(x) 1{|x| > threshold * mean(|x|)}``: they depend on `x` alone, as the
        binary codes do (the scale only multiplies them)."""
        return ternary_codes(x, ternary_threshold(x, granularity, factor=self.threshold), granularity)

    def dequantize(self, codes: Tensor, scale: Tensor, zero_point: Tensor, *, granularity: Granularity) -> Tensor:
        return dequantize(codes, scale, 0, granularity=granularity)

    def storage_bits(self) -> int:
        return 2

    def __repr__(self) -> str:
        return f"TernaryLevels(threshold={self.threshold})"


register_levels(BinaryLevels)
register_levels(TernaryLevels)


__all__ = [
    "TWN_THRESHOLD",
    "BinaryLevels",
    "TernaryLevels",
    "binary_fake_quantize",
    "clipped_identity",
    "sign_codes",
    "ternary_codes",
    "ternary_fake_quantize",
    "ternary_scales",
    "ternary_threshold",
    "ttq_dequantize",
    "ttq_fake_quantize",
    "twn_quantize",
]
