"""Observers: watch tensors during calibration and choose a quantization range from them.

* :class:`MinMaxObserver` - the running minimum and maximum (Jacob et al. 2018).
* :class:`MovingAverageMinMaxObserver` - an exponential moving average of per-batch min / max,
  ``r <- r + c * (r_batch - r)`` (Jacob et al. 2018, section 3; TensorFlow's and torch.ao's
  default activation observer).
* :class:`PercentileObserver` - the ``p``-th and ``(100 - p)``-th percentiles of each batch,
  averaged over batches (McKinstry et al. 2019; Wu et al. 2020, "Integer quantization for deep
  learning inference", section 4.2): clips rare outliers.
* :class:`MSEObserver` - the clipping range ``alpha * [lo, hi]`` that minimises the mean squared
  quantization error over a grid of ``alpha`` (Banner et al. 2019; Choukroun et al. 2019 "OMSE";
  Nagel et al. 2021, "A white paper on neural network quantization", section 3.4), evaluated on a
  bounded random sample of what was observed.

Every observer works at any granularity (per tensor / channel / group) and returns
``(scale, zero_point)`` through :func:`~torchslim.quantization.functional.choose_qparams`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from torchslim.core.errors import ConfigError, DataError, did_you_mean
from torchslim.quantization.functional import (
    Granularity,
    as_granularity,
    binary_scale,
    check_bits,
    choose_qparams,
    fake_quantize,
)

OBSERVERS = ("minmax", "moving_average", "percentile", "mse")


class Observer:
    """Base class: ``observe(x)`` any number of times, then ``qparams()``."""

    name = "observer"

    def __init__(self, *, bits: int = 8, symmetric: bool = False, granularity: Granularity | str | None = None) -> None:
        self.bits = check_bits(bits)
        self.symmetric = bool(symmetric)
        self.granularity = as_granularity(granularity)
        self.count = 0
        self.lo: Tensor | None = None
        self.hi: Tensor | None = None
        self.param_shape: tuple[int, ...] = ()

    @property
    def observed(self) -> bool:
        return self.count > 0

    def _rows(self, x: Tensor) -> Tensor:
        x = x.detach().float()
        if not torch.isfinite(x).all():
            raise DataError(f"{type(self).__name__}: observed values contain NaN or inf.")
        return self.granularity.rows(x)

    def observe(self, x: Tensor) -> None:
        rows = self._rows(x)
        self._update(rows, x.shape)
        self.param_shape = self.granularity.param_shape(x.shape)
        self.count += 1

    def _update(self, rows: Tensor, shape: torch.Size) -> None:
        raise NotImplementedError

    def range(self) -> tuple[Tensor, Tensor]:
        """``(lo, hi)`` shaped as the granularity's parameters."""
        if not self.observed or self.lo is None or self.hi is None:
            raise DataError(f"{type(self).__name__} has observed nothing; run calibration data first.")
        return self.lo.reshape(self.param_shape), self.hi.reshape(self.param_shape)

    def qparams(self) -> tuple[Tensor, Tensor]:
        """``(scale, zero_point)`` for the observed range."""
        lo, hi = self.range()
        return choose_qparams(lo, hi, bits=self.bits, symmetric=self.symmetric)

    def _merge(self, lo: Tensor, hi: Tensor) -> None:
        if self.lo is None or self.hi is None:
            self.lo, self.hi = lo, hi
        elif self.lo.shape != lo.shape:
            raise DataError(
                f"{type(self).__name__}: observed tensors changed their parameter shape from "
                f"{list(self.lo.shape)} to {list(lo.shape)}."
            )
        else:
            self.lo, self.hi = torch.minimum(self.lo, lo), torch.maximum(self.hi, hi)


class MinMaxObserver(Observer):
    """Running minimum and maximum."""

    name = "minmax"

    def _update(self, rows: Tensor, shape: torch.Size) -> None:
        self._merge(rows.amin(dim=1), rows.amax(dim=1))


class MovingAverageMinMaxObserver(Observer):
    """Exponential moving average of per-batch min / max with averaging constant `momentum`."""

    name = "moving_average"

    def __init__(self, *, momentum: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 < momentum <= 1.0:
            raise ConfigError(f"MovingAverageMinMaxObserver momentum={momentum!r} is out of range (0, 1].")
        self.momentum = float(momentum)

    def _update(self, rows: Tensor, shape: torch.Size) -> None:
        lo, hi = rows.amin(dim=1), rows.amax(dim=1)
        if self.lo is None or self.hi is None:
            self.lo, self.hi = lo, hi
        else:
            c = self.momentum
            self.lo = self.lo + c * (lo - self.lo)
            self.hi = self.hi + c * (hi - self.hi)


def _kth(rows: Tensor, fraction: float) -> Tensor:
    """Per-row value at `fraction` (0..1) of the sorted row (nearest rank)."""
    n = rows.shape[1]
    k = min(max(int(math.ceil(fraction * n)), 1), n)
    return rows.kthvalue(k, dim=1).values


class PercentileObserver(Observer):
    """Per-batch ``(100 - p)``-th / ``p``-th percentiles, averaged over batches (weighted by size)."""

    name = "percentile"

    def __init__(self, *, percentile: float = 99.99, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 50.0 < percentile <= 100.0:
            raise ConfigError(f"PercentileObserver percentile={percentile!r} is out of range (50, 100].")
        self.percentile = float(percentile)
        self._weight = 0.0

    def _update(self, rows: Tensor, shape: torch.Size) -> None:
        p = self.percentile / 100.0
        lo, hi = _kth(rows, 1.0 - p), _kth(rows, p)
        w = float(rows.shape[1])
        if self.lo is None or self.hi is None:
            self.lo, self.hi, self._weight = lo, hi, w
        else:
            total = self._weight + w
            self.lo = (self.lo * self._weight + lo * w) / total
            self.hi = (self.hi * self._weight + hi * w) / total
            self._weight = total


class MSEObserver(Observer):
    """Clipping range ``alpha * [lo, hi]`` minimising the squared quantization error.

    Keeps the running min / max and a random sample of at most `max_samples` values per row
    (the sample is what the error is measured on), then searches `grid` values of ``alpha`` in
    ``[min_alpha, 1]``.
    """

    name = "mse"

    def __init__(
        self, *, grid: int = 80, min_alpha: float = 0.2, max_samples: int = 4096, seed: int = 0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.grid = int(grid)
        self.min_alpha = float(min_alpha)
        self.max_samples = int(max_samples)
        self._sample: Tensor | None = None
        self._generator = torch.Generator().manual_seed(seed)

    def _update(self, rows: Tensor, shape: torch.Size) -> None:
        self._merge(rows.amin(dim=1), rows.amax(dim=1))
        n = rows.shape[1]
        if n > self.max_samples:
            idx = torch.randperm(n, generator=self._generator)[: self.max_samples]
            rows = rows[:, idx]
        sample = rows if self._sample is None else torch.cat([self._sample, rows], dim=1)
        if sample.shape[1] > self.max_samples:
            idx = torch.randperm(sample.shape[1], generator=self._generator)[: self.max_samples]
            sample = sample[:, idx]
        self._sample = sample

    def qparams(self) -> tuple[Tensor, Tensor]:
        lo, hi = self.range()
        assert self._sample is not None
        return mse_search(
            self._sample,
            lo.reshape(-1),
            hi.reshape(-1),
            bits=self.bits,
            symmetric=self.symmetric,
            grid=self.grid,
            min_alpha=self.min_alpha,
            param_shape=lo.shape,
        )


def mse_search(
    rows: Tensor,
    lo: Tensor,
    hi: Tensor,
    *,
    bits: int,
    symmetric: bool,
    grid: int = 80,
    min_alpha: float = 0.2,
    param_shape: torch.Size | tuple[int, ...] | None = None,
) -> tuple[Tensor, Tensor]:
    """For each row of `rows` ``[G, N]``, the ``(scale, zero_point)`` of ``alpha * [lo, hi]`` with the
    smallest ``sum((x - fake_quantize(x))^2)`` over ``alpha`` in a `grid` on ``[min_alpha, 1]``."""
    best_err = torch.full((rows.shape[0],), math.inf)
    best_scale, best_zp = choose_qparams(lo, hi, bits=bits, symmetric=symmetric)
    for alpha in torch.linspace(1.0, min_alpha, grid).tolist():
        scale, zp = choose_qparams(lo * alpha, hi * alpha, bits=bits, symmetric=symmetric)
        approx = fake_quantize(rows, scale, zp, bits=bits, granularity=Granularity("per_channel", axis=0))
        err = ((rows - approx) ** 2).sum(dim=1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_scale = torch.where(better, scale, best_scale)
        best_zp = torch.where(better, zp, best_zp)
    shape = tuple(param_shape) if param_shape is not None else tuple(lo.shape)
    return best_scale.reshape(shape), best_zp.reshape(shape)


def make_observer(
    name: str,
    *,
    bits: int = 8,
    symmetric: bool = False,
    granularity: Granularity | str | None = None,
    percentile: float = 99.99,
    momentum: float = 0.1,
) -> Observer:
    """An observer by name: ``minmax``, ``moving_average``, ``percentile`` or ``mse``."""
    common: dict[str, Any] = {"bits": bits, "symmetric": symmetric, "granularity": granularity}
    if name == "minmax":
        return MinMaxObserver(**common)
    if name == "moving_average":
        return MovingAverageMinMaxObserver(momentum=momentum, **common)
    if name == "percentile":
        return PercentileObserver(percentile=percentile, **common)
    if name == "mse":
        return MSEObserver(**common)
    raise ConfigError(f"Unknown observer {name!r}; known: {list(OBSERVERS)}." + did_you_mean(str(name), OBSERVERS))


def weight_qparams(
    weight: Tensor,
    *,
    bits: int,
    symmetric: bool = True,
    granularity: Granularity | None = None,
    method: str = "minmax",
    percentile: float = 99.99,
) -> tuple[Tensor, Tensor]:
    """``(scale, zero_point)`` for a weight tensor by range `method` (minmax, percentile, mse).

    1 bit always uses the binary scale ``mean(|w|)``. The MSE search runs on the whole tensor.
    """
    g = as_granularity(granularity)
    g.check(weight.shape, what="weight")
    if check_bits(bits) == 1:
        scale = binary_scale(weight, g)
        return scale, torch.zeros_like(scale, dtype=torch.int32)
    if method in ("minmax", "gptq", "moving_average"):
        obs: Observer = MinMaxObserver(bits=bits, symmetric=symmetric, granularity=g)
        obs.observe(weight)
        return obs.qparams()
    if method == "percentile":
        obs = PercentileObserver(bits=bits, symmetric=symmetric, granularity=g, percentile=percentile)
        obs.observe(weight)
        return obs.qparams()
    if method == "mse":
        rows = g.rows(weight.detach().float())
        lo, hi = rows.amin(dim=1), rows.amax(dim=1)
        return mse_search(rows, lo, hi, bits=bits, symmetric=symmetric, param_shape=g.param_shape(weight.shape))
    raise ConfigError(f"Unknown weight range method {method!r}; known: minmax, percentile, mse, gptq.")
