"""Gradient estimators: how a gradient passes through the rounding of a fake quantizer.

``round`` has a zero gradient almost everywhere, so training through quantization replaces it
(Bengio, Leonard & Courville 2013, "Estimating or propagating gradients through stochastic
neurons"):

* :class:`STE` - plain straight-through: ``d round(v) / dv = 1`` everywhere (no clipping);
* :class:`ClippedSTE` - straight-through inside the clamp range, 0 outside
  (``d x_hat / dx = 1{qmin <= round(x / s) + z <= qmax}``); 1 bit: ``1{|x| <= s}`` (Hubara et al. 2016);
* :class:`LSQGradient` - clipped STE for ``x`` and the LSQ gradient for the step size
  (Esser et al. 2020): ``d x_hat / ds = round(v) - v`` inside, ``qmin - z`` / ``qmax - z`` outside,
  scaled by ``g = 1 / sqrt(N * qmax)``.

Each is a small value with one method, ``fake_quantize(x, scale, zero_point, bits=, granularity=)``,
selected by name from :data:`GRADIENTS`.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from torch import Tensor

from torchslim.core.registry import Registry
from torchslim.quantization.functional import (
    Granularity,
    check_bits,
    fake_quantize,
    lsq_fake_quantize,
    qrange,
    round_ste,
)


class GradientEstimator(Protocol):
    """Forward: ``dequantize(quantize(x))``; backward: this estimator's gradient."""

    name: ClassVar[str]

    def fake_quantize(
        self, x: Tensor, scale: Tensor, zero_point: Tensor, *, bits: int, granularity: Granularity
    ) -> Tensor: ...


GRADIENTS: Registry[None, type[GradientEstimator]] = Registry("gradient estimator")


def register_gradient(cls: type[GradientEstimator]) -> type[GradientEstimator]:
    """Register a gradient estimator under its ``name`` (idempotent)."""
    if cls.name not in GRADIENTS:
        GRADIENTS.register(cls.name, None, cls)
    return cls


class STE:
    """Plain straight-through estimator: the identity gradient, also outside the clamp range."""

    name: ClassVar[str] = "ste"

    def fake_quantize(
        self, x: Tensor, scale: Tensor, zero_point: Tensor, *, bits: int, granularity: Granularity
    ) -> Tensor:
        bits = check_bits(bits)
        if bits == 1:
            return fake_quantize(x, scale, zero_point, bits=bits, granularity=granularity)
        qmin, qmax = qrange(bits)
        rows = granularity.rows(x)
        s = scale.reshape(-1, 1).to(rows.dtype)
        z = zero_point.reshape(-1, 1).to(rows.dtype)
        v = rows / s + z
        clamped = v + (v.clamp(qmin, qmax) - v).detach()  # value clamped, gradient 1
        return granularity.unrows((round_ste(clamped) - z) * s, x.shape)


class ClippedSTE:
    """Straight-through inside the clamp range, zero outside
    (:func:`~torchslim.quantization.functional.fake_quantize`)."""

    name: ClassVar[str] = "clipped_ste"

    def fake_quantize(
        self, x: Tensor, scale: Tensor, zero_point: Tensor, *, bits: int, granularity: Granularity
    ) -> Tensor:
        return fake_quantize(x, scale, zero_point, bits=bits, granularity=granularity)


class LSQGradient:
    """LSQ: clipped STE for the input and the scaled step-size gradient (Esser et al. 2020)."""

    name: ClassVar[str] = "lsq"

    def __init__(self, grad_scale: float | None = None) -> None:
        self.grad_scale = grad_scale

    def fake_quantize(
        self, x: Tensor, scale: Tensor, zero_point: Tensor, *, bits: int, granularity: Granularity
    ) -> Tensor:
        return lsq_fake_quantize(x, scale, zero_point, bits=bits, granularity=granularity, grad_scale=self.grad_scale)


for _cls in (STE, ClippedSTE, LSQGradient):
    register_gradient(_cls)

__all__ = ["GRADIENTS", "ClippedSTE", "GradientEstimator", "LSQGradient", "STE", "register_gradient"]
