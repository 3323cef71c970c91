"""A weight quantizer, composed: levels x granularity x range estimator x gradient estimator.

:class:`WeightQuantizer` holds one value of each part and nothing else::

    wq = WeightQuantizer(levels=UniformLevels(bits=4), granularity=Granularity.per_group(32),
                         range=GPTQRange(), gradient=ClippedSTE())
    codes, scale, zero_point = wq.quantize(weight, hessian=h)     # post-training
    w_hat = wq.fake_quantize(weight, scale, zero_point)            # training (QAT)

so a new level type, range estimator or gradient is one small class in its own module, and a
config section (:class:`~torchslim.quantization.config.WeightQuant`) names them. Levels fitted to
the weight itself (a k-means codebook, the least-error power-of-two scale; see
:func:`~torchslim.quantization.levels.fit_levels`) choose their own parameters and round to their
nearest level: the range estimator is not consulted for them.
"""

from __future__ import annotations

import dataclasses

from torch import Tensor

from torchslim.quantization.functional import Granularity
from torchslim.quantization.gradients import ClippedSTE, GradientEstimator
from torchslim.quantization.levels import Levels, fit_levels
from torchslim.quantization.ranges import MinMaxRange, RangeEstimator
from torchslim.quantization.specs import WeightSpec


@dataclasses.dataclass(frozen=True)
class WeightQuantizer:
    """One quantizer of weights; see the module docstring."""

    levels: Levels
    granularity: Granularity
    range: RangeEstimator = dataclasses.field(default_factory=MinMaxRange)
    gradient: GradientEstimator = dataclasses.field(default_factory=ClippedSTE)

    @classmethod
    def for_spec(
        cls,
        spec: WeightSpec,
        *,
        range: RangeEstimator | None = None,  # noqa: A002
        gradient: GradientEstimator | None = None,
    ) -> WeightQuantizer:
        return cls(spec.make_levels(), spec.granularity, range or MinMaxRange(), gradient or ClippedSTE())

    @property
    def spec(self) -> WeightSpec:
        return WeightSpec(self.levels.bits, self.levels.symmetric, self.granularity, self.levels.name)

    def qparams(self, weight: Tensor) -> tuple[Tensor, Tensor]:
        """``(scale, zero_point)`` the levels fit to `weight`, else the range estimator's choice."""
        fitted = fit_levels(self.levels, weight, self.granularity)
        if fitted is not None:
            return fitted
        return self.range.qparams(weight, levels=self.levels, granularity=self.granularity)

    def quantize(self, weight: Tensor, *, hessian: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``(codes, scale, zero_point)`` of `weight` (`hessian`: GPTQ's input statistics)."""
        self.granularity.check(weight.shape, what="weight")
        fitted = fit_levels(self.levels, weight, self.granularity)
        if fitted is not None:
            scale, zero_point = fitted
            return self.levels.quantize(weight, scale, zero_point, granularity=self.granularity), scale, zero_point
        return self.range.quantize(weight, levels=self.levels, granularity=self.granularity, hessian=hessian)

    def dequantize(self, codes: Tensor, scale: Tensor, zero_point: Tensor) -> Tensor:
        return self.levels.dequantize(codes, scale, zero_point, granularity=self.granularity)

    def fake_quantize(self, weight: Tensor, scale: Tensor, zero_point: Tensor) -> Tensor:
        """The quantized weight, differentiable through the gradient estimator."""
        return self.gradient.fake_quantize(
            weight, scale, zero_point, bits=self.levels.bits, granularity=self.granularity
        )


__all__ = ["WeightQuantizer"]
