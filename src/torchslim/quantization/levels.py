"""Levels: the set of values a quantized weight can take, and how a value maps to a stored code.

A weight quantizer is composed of four small parts (as in Brevitas' integer cores and torchao's
granularity values): **levels** (this module) x **granularity**
(:class:`~torchslim.quantization.functional.Granularity`) x **range estimator**
(:mod:`~torchslim.quantization.ranges`) x **gradient estimator**
(:mod:`~torchslim.quantization.gradients`); :class:`~torchslim.quantization.quantizer.WeightQuantizer`
puts them together.

:class:`UniformLevels` are ``b``-bit signed integer codes on the affine grid ``x_hat = s * (q - z)``
(Jacob et al. 2018, eq. 1; 1 bit is the sign quantizer ``x_hat = s * sign(x)`` of BinaryConnect /
XNOR-Net); the math is the pure functions of :mod:`~torchslim.quantization.functional`. Non-uniform
level types live in their own modules: ``kmeans`` (:mod:`~torchslim.quantization.kmeans`, a codebook
per row, Han et al. 2016), ``pow2`` and ``apot`` (:mod:`~torchslim.quantization.pow2`, Miyashita et
al. 2016; Li et al. 2020).

Optional parts of a level type (read with :func:`scale_shape`, :func:`is_affine`, :func:`fit_levels`):

* ``scale_shape(granularity, shape)``: the shape of its "scale" tensor when it is not the
  granularity's parameter shape (a codebook ``[*param_shape, 2**b]``);
* ``affine`` (class attribute, default True): ``x_hat = s * (q - z)``, so ONNX ``DequantizeLinear``
  on integer codes is exact; a non-affine level type exports its dequantized float weight;
* ``fit(weight, *, granularity) -> (scale, zero_point)``: levels fitted to the weight itself
  (k-means centroids, the power-of-two scale with the least error); the range estimator is then
  not consulted.

Adding a level type
-------------------
A new level type is one small class and one registration, not new flags::

    class PowerOfTwoLevels:                     # x_hat = s * sign(q) * 2 ** (|q| - 1), q = 0 -> 0
        name: ClassVar[str] = "power_of_two"
        def __init__(self, *, bits: int, symmetric: bool = True) -> None: ...
        def code_range(self) -> tuple[int, int]: ...
        def qparams(self, lo, hi) -> tuple[Tensor, Tensor]: ...        # scale (and zero point) of a range
        def quantize(self, x, scale, zero_point, *, granularity) -> Tensor: ...    # int8 codes
        def dequantize(self, codes, scale, zero_point, *, granularity) -> Tensor: ...
        def storage_bits(self) -> int: ...

    register_levels(PowerOfTwoLevels)

* **k-means codebook** (Han et al. 2016): ``qparams`` is replaced by a fit of ``2**b`` centroids
  per granularity row (stored as the "scale" tensor ``[G, 2**b]``); ``quantize`` is the nearest
  centroid index, ``dequantize`` a gather.
* **power-of-two / log** (Miyashita et al. 2016): codes are signed exponents as above; the
  range estimator still chooses ``s``.
* **binary** ``{-a, +a}`` (XNOR-Net): codes ``sign(x)``, ``a = mean(|x|)`` per row; ``storage_bits`` 1.
* **ternary** ``{-a, 0, +a}`` (Li et al. 2016, TWN): threshold ``0.7 mean(|x|)``, ``a`` the mean of
  the weights above it; ``storage_bits`` 2.

The quantized layer stores whatever ``quantize`` returns as codes and the spec's ``levels`` name in
its plan layout (:class:`~torchslim.quantization.specs.WeightSpec`), so save / load, the report and
the ONNX refusal for non-integer levels follow from the registration.
"""

from __future__ import annotations

from typing import ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor

from torchslim.core.registry import Registry
from torchslim.quantization.functional import (
    Granularity,
    check_bits,
    choose_qparams,
    dequantize,
    qrange,
    quantize,
)


@runtime_checkable
class Levels(Protocol):
    """The values a quantized tensor can take and their integer codes (see the module docstring)."""

    name: ClassVar[str]
    bits: int
    symmetric: bool

    def __init__(self, *, bits: int, symmetric: bool = True) -> None: ...

    def code_range(self) -> tuple[int, int]:
        """``(qmin, qmax)`` of the stored codes."""
        ...

    def qparams(self, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
        """``(scale, zero_point)`` that cover the range ``[lo, hi]``."""
        ...

    def quantize(self, x: Tensor, scale: Tensor, zero_point: Tensor, *, granularity: Granularity) -> Tensor:
        """Integer codes (int8) of `x`."""
        ...

    def dequantize(self, codes: Tensor, scale: Tensor, zero_point: Tensor, *, granularity: Granularity) -> Tensor:
        """The float values `codes` stand for."""
        ...

    def storage_bits(self) -> int:
        """Bits per stored code."""
        ...


LEVELS: Registry[None, type[Levels]] = Registry("quantization levels")
"""Level type name (``WeightQuant.levels``, ``WeightSpec.levels``) -> class."""


def register_levels(cls: type[Levels]) -> type[Levels]:
    """Register a level type under its ``name`` (usable as a class decorator; idempotent)."""
    if cls.name not in LEVELS:
        LEVELS.register(cls.name, None, cls)
    return cls


def scale_shape(levels: Levels, granularity: Granularity, shape: torch.Size | tuple[int, ...]) -> tuple[int, ...]:
    """Shape of the "scale" tensor of `levels` for a weight of `shape` (a codebook is wider)."""
    own = getattr(levels, "scale_shape", None)
    return tuple(own(granularity, shape)) if callable(own) else granularity.param_shape(shape)


def is_affine(levels: Levels) -> bool:
    """True when ``x_hat = s * (q - z)`` (ONNX ``DequantizeLinear`` on the codes is exact)."""
    return bool(getattr(levels, "affine", True))


def fit_levels(levels: Levels, weight: Tensor, granularity: Granularity) -> tuple[Tensor, Tensor] | None:
    """``(scale, zero_point)`` from the levels' own ``fit`` on `weight`, or None when they have none."""
    fit = getattr(levels, "fit", None)
    return fit(weight, granularity=granularity) if callable(fit) else None


class UniformLevels:
    """``b``-bit uniform affine levels: ``q = clamp(round(x / s) + z, qmin, qmax)``, ``x_hat = s (q - z)``."""

    name: ClassVar[str] = "uniform"
    affine: ClassVar[bool] = True

    def __init__(self, *, bits: int, symmetric: bool = True) -> None:
        self.bits = check_bits(bits)
        self.symmetric = bool(symmetric)

    def code_range(self) -> tuple[int, int]:
        return qrange(self.bits)

    def qparams(self, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
        return choose_qparams(lo, hi, bits=self.bits, symmetric=self.symmetric)

    def quantize(self, x: Tensor, scale: Tensor, zero_point: Tensor, *, granularity: Granularity) -> Tensor:
        return quantize(x, scale, zero_point, bits=self.bits, granularity=granularity)

    def dequantize(self, codes: Tensor, scale: Tensor, zero_point: Tensor, *, granularity: Granularity) -> Tensor:
        return dequantize(codes, scale, zero_point, granularity=granularity)

    def storage_bits(self) -> int:
        return self.bits

    def __repr__(self) -> str:
        return f"UniformLevels(bits={self.bits}, symmetric={self.symmetric})"


register_levels(UniformLevels)

__all__ = ["LEVELS", "Levels", "UniformLevels", "fit_levels", "is_affine", "register_levels", "scale_shape"]
