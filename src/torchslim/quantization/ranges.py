"""Range estimators: how a weight's quantization range (its scale and zero point) is chosen.

* :class:`MinMaxRange` - the weight's minimum and maximum per granularity row (Jacob et al. 2018);
* :class:`PercentileRange` - the ``p``-th / ``(100 - p)``-th percentiles (McKinstry et al. 2019);
* :class:`MSERange` - the clipping ``alpha * [lo, hi]`` with the least squared rounding error over a
  grid of ``alpha`` (Banner et al. 2019; Nagel et al. 2021, section 3.4);
* :class:`GPTQRange` - error-compensating rounding with the layer's input Hessian (Frantar et al.
  2023; :mod:`~torchslim.quantization.gptq`); without a Hessian it rounds to nearest with min-max;
* :class:`LearnedRange` - LSQ (Esser et al. 2020): starts from min-max (8 bits) or MSE (fewer bits)
  and the step size is then trained (QAT; :class:`~torchslim.quantization.gradients.LSQGradient`).

Each is selected by name from :data:`RANGES` (``WeightQuant.range``); ``auto`` is resolved by
:func:`resolve_range`. One bit always uses the binary scale ``mean(|w|)``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from torchslim.core.registry import Registry
from torchslim.quantization.functional import Granularity
from torchslim.quantization.levels import Levels
from torchslim.quantization.observers import weight_qparams


class RangeEstimator:
    """Chooses ``(scale, zero_point)`` for a weight; :meth:`quantize` also rounds it."""

    name: ClassVar[str] = ""

    def qparams(self, weight: Tensor, *, levels: Levels, granularity: Granularity) -> tuple[Tensor, Tensor]:
        return weight_qparams(
            weight, bits=levels.bits, symmetric=levels.symmetric, granularity=granularity, method=self.name
        )

    def quantize(
        self, weight: Tensor, *, levels: Levels, granularity: Granularity, hessian: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(codes, scale, zero_point)``: round to nearest on the chosen range (`hessian` unused)."""
        scale, zp = self.qparams(weight, levels=levels, granularity=granularity)
        return levels.quantize(weight, scale, zp, granularity=granularity), scale, zp


RANGES: Registry[None, type[RangeEstimator]] = Registry("weight range estimator")


def register_range(cls: type[RangeEstimator]) -> type[RangeEstimator]:
    """Register a range estimator under its ``name`` (idempotent)."""
    if cls.name not in RANGES:
        RANGES.register(cls.name, None, cls)
    return cls


class MinMaxRange(RangeEstimator):
    name: ClassVar[str] = "minmax"


class PercentileRange(RangeEstimator):
    name: ClassVar[str] = "percentile"

    def __init__(self, percentile: float = 99.99) -> None:
        self.percentile = float(percentile)

    def qparams(self, weight: Tensor, *, levels: Levels, granularity: Granularity) -> tuple[Tensor, Tensor]:
        return weight_qparams(
            weight,
            bits=levels.bits,
            symmetric=levels.symmetric,
            granularity=granularity,
            method="percentile",
            percentile=self.percentile,
        )


class MSERange(RangeEstimator):
    name: ClassVar[str] = "mse"


def round_to_nearest_range(bits: int) -> RangeEstimator:
    """The range GPTQ and LSQ start from: MSE below 8 bits, min-max at 8 bits."""
    return MSERange() if bits < 8 else MinMaxRange()


class GPTQRange(RangeEstimator):
    """GPTQ's error-compensating rounding; needs the layer's input Hessian (else min-max rounding)."""

    name: ClassVar[str] = "gptq"

    def __init__(self, block_size: int = 128, damp: float = 0.01) -> None:
        self.block_size = int(block_size)
        self.damp = float(damp)

    def quantize(
        self, weight: Tensor, *, levels: Levels, granularity: Granularity, hessian: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        if hessian is None:
            return MinMaxRange().quantize(weight, levels=levels, granularity=granularity)
        from torchslim.quantization.gptq import gptq_quantize
        from torchslim.quantization.specs import WeightSpec

        spec = WeightSpec(levels.bits, levels.symmetric, granularity, levels.name)
        return gptq_quantize(
            weight,
            hessian,
            spec=spec,
            block_size=self.block_size,
            damp=self.damp,
            range_method=round_to_nearest_range(levels.bits).name,
        )


class LearnedRange(RangeEstimator):
    """LSQ: the initial range of a step size that QAT then learns."""

    name: ClassVar[str] = "learned"

    def qparams(self, weight: Tensor, *, levels: Levels, granularity: Granularity) -> tuple[Tensor, Tensor]:
        return round_to_nearest_range(levels.bits).qparams(weight, levels=levels, granularity=granularity)


for _cls in (MinMaxRange, PercentileRange, MSERange, GPTQRange, LearnedRange):
    register_range(_cls)


def make_range(name: str, **options: Any) -> RangeEstimator:
    """A range estimator by name; `options` it does not take are ignored (``percentile``, ``block_size``...)."""
    cls = RANGES.entry(name).handler
    if cls is PercentileRange:
        return PercentileRange(options.get("percentile", 99.99))
    if cls is GPTQRange:
        return GPTQRange(options.get("block_size", 128), options.get("damp", 0.01))
    return cls()


def resolve_range(name: str, *, bits: int, mode: str, has_data: bool) -> str:
    """``auto``: GPTQ at 2-4 bits for PTQ with calibration data, the MSE range otherwise."""
    if name != "auto":
        return name
    if mode == "ptq" and 1 < bits <= 4 and has_data:
        return "gptq"
    return "mse"


__all__ = [
    "GPTQRange",
    "LearnedRange",
    "MSERange",
    "MinMaxRange",
    "PercentileRange",
    "RANGES",
    "RangeEstimator",
    "make_range",
    "register_range",
    "resolve_range",
    "round_to_nearest_range",
]
