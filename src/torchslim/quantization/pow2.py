"""Power-of-two (logarithmic) levels and additive powers-of-two (APoT) levels.

**Power of two** (Miyashita, Lee & Murmann 2016, "Convolutional neural networks using logarithmic
data representation"): every weight becomes ``0`` or ``+-s * 2**e`` with an integer exponent ``e``,
so a multiplication by a weight is a shift. With ``b`` bits, a sign and ``m = 2**(b-1) - 1``
magnitudes: signed code ``q`` in ``[-m, m]``,

    x_hat = s * sign(q) * 2 ** (|q| - m)      (q != 0),      x_hat = 0      (q = 0)

so the largest magnitude is ``s`` and the smallest ``s * 2**(1 - m)``. The scale ``s`` is itself a
power of two (``scale_pow2=True``, the default), which makes every weight an exact power of two;
it is chosen per granularity row among ``2**floor(log2 max|w|)`` and ``2**ceil(log2 max|w|)`` for
the smaller squared error. Each weight goes to the nearest level (least squared error; the
thresholds are the midpoints between consecutive levels).

**APoT** (Li, Dong & Wang 2020, "Additive powers-of-two quantization", eq. 5): each magnitude is a
sum of two power-of-two terms, ``p0 + p1`` with ``p0 in {0, 2**0, 2**-2, 2**-4, ...}`` and
``p1 in {0, 2**-1, 2**-3, ...}`` (``2**k0`` and ``2**k1`` choices, ``k0 + k1 = b - 1``), normalised so
that the largest is 1: denser levels near the maximum than power-of-two, still two shifts and an add
per weight. Codes are the sign times the index of the magnitude in the sorted table.

Both are level types of the quantizer composition (registry names ``pow2`` and ``apot``); their
scale has the granularity's parameter shape, as for uniform levels.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from torchslim.core.errors import ConfigError
from torchslim.quantization.functional import Granularity, check_bits
from torchslim.quantization.levels import register_levels


def pow2_magnitudes(bits: int) -> Tensor:
    """``[0, 2**(1-m), ..., 2**-1, 1]`` with ``m = 2**(bits-1) - 1`` (float64)."""
    m = 2 ** (bits - 1) - 1
    return torch.cat([torch.zeros(1, dtype=torch.float64), 2.0 ** torch.arange(1 - m, 1, dtype=torch.float64)])


def apot_magnitudes(bits: int) -> Tensor:
    """The sorted sums ``p0 + p1`` of Li et al.'s two-term APoT set, normalised to a maximum of 1."""
    magnitude_bits = bits - 1
    k0 = (magnitude_bits + 1) // 2
    k1 = magnitude_bits - k0
    first = [0.0] + [2.0 ** (-2 * i) for i in range(2**k0 - 1)]
    second = [0.0] + [2.0 ** (-2 * i - 1) for i in range(2**k1 - 1)]
    sums = sorted({a + b for a in first for b in second})
    table = torch.tensor(sums, dtype=torch.float64)
    return table / table.max()


class _TableLevels:
    """Signed codes ``q``, ``x_hat = s * sign(q) * table[|q|]`` with ``table[0] = 0`` and max 1."""

    name: ClassVar[str] = ""
    affine: ClassVar[bool] = False

    def __init__(self, *, bits: int, symmetric: bool = True, scale_pow2: bool = True) -> None:
        self.bits = check_bits(bits)
        if self.bits < 2:
            raise ConfigError(f"{self.name} levels need bits >= 2 (a sign and at least one magnitude).")
        self.symmetric = True  # sign-magnitude levels are symmetric by construction
        self.scale_pow2 = bool(scale_pow2)
        self.table = self.magnitudes()

    def magnitudes(self) -> Tensor:
        raise NotImplementedError

    def code_range(self) -> tuple[int, int]:
        m = self.table.numel() - 1
        return -m, m

    def qparams(self, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
        amax = torch.maximum(lo.abs(), hi.abs()).float()
        scale = torch.exp2(torch.ceil(torch.log2(amax.clamp(min=1e-30)))) if self.scale_pow2 else amax
        scale = torch.where(amax > 0, scale, torch.ones_like(scale))
        return scale, torch.zeros(scale.shape, dtype=torch.int32)

    def fit(self, weight: Tensor, *, granularity: Granularity) -> tuple[Tensor, Tensor]:
        """The scale per row with the least squared error (power-of-two candidates, or max |w|)."""
        rows = granularity.rows(weight.detach().float())
        amax = rows.abs().amax(dim=1).clamp(min=1e-30)
        if self.scale_pow2:
            low = torch.exp2(torch.floor(torch.log2(amax)))
            candidates = [low, low * 2]
        else:
            candidates = [amax]
        best, best_err = candidates[0], torch.full_like(amax, float("inf"))
        for scale in candidates:
            err = ((self._round_rows(rows, scale) - rows) ** 2).sum(dim=1)
            best = torch.where(err < best_err, scale, best)
            best_err = torch.minimum(err, best_err)
        zero_rows = rows.abs().amax(dim=1) == 0
        best = torch.where(zero_rows, torch.ones_like(best), best)
        shape = granularity.param_shape(weight.shape)
        return best.reshape(shape), torch.zeros(shape, dtype=torch.int32)

    def _index(self, magnitude: Tensor) -> Tensor:
        """Index of the nearest table entry of each (scale-normalised) magnitude."""
        table = self.table.to(magnitude.dtype)
        midpoints = (table[1:] + table[:-1]) / 2
        return torch.bucketize(magnitude.clamp(max=1.0), midpoints)

    def _round_rows(self, rows: Tensor, scale: Tensor) -> Tensor:
        index = self._index(rows.abs() / scale[:, None])
        return torch.sign(rows) * self.table.to(rows.dtype)[index] * scale[:, None]

    def quantize(self, x: Tensor, scale: Tensor, zero_point: Tensor, *, granularity: Granularity) -> Tensor:
        rows = granularity.rows(x.detach().float())
        s = scale.detach().float().reshape(-1, 1)
        index = self._index(rows.abs() / s)
        codes = torch.sign(rows).long() * index
        return granularity.unrows(codes.to(torch.int8), x.shape)

    def dequantize(self, codes: Tensor, scale: Tensor, zero_point: Tensor, *, granularity: Granularity) -> Tensor:
        rows = granularity.rows(codes).long()
        table = self.table.to(device=codes.device, dtype=scale.dtype if scale.is_floating_point() else torch.float32)
        values = torch.sign(rows).to(table.dtype) * table[rows.abs()]
        return granularity.unrows(values * scale.reshape(-1, 1), codes.shape)

    def storage_bits(self) -> int:
        return self.bits

    def __repr__(self) -> str:
        return f"{type(self).__name__}(bits={self.bits}, scale_pow2={self.scale_pow2})"


class PowerOfTwoLevels(_TableLevels):
    """``0`` or ``+-s * 2**e`` (Miyashita et al. 2016); see the module docstring."""

    name: ClassVar[str] = "pow2"

    def magnitudes(self) -> Tensor:
        return pow2_magnitudes(self.bits)


class APoTLevels(_TableLevels):
    """Sums of two powers of two (Li et al. 2020); see the module docstring."""

    name: ClassVar[str] = "apot"

    def magnitudes(self) -> Tensor:
        return apot_magnitudes(self.bits)


register_levels(PowerOfTwoLevels)
register_levels(APoTLevels)

__all__ = ["APoTLevels", "PowerOfTwoLevels", "apot_magnitudes", "pow2_magnitudes"]
