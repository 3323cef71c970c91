"""k-means weight sharing: a codebook of ``2**b`` centroids per granularity row (Han et al. 2016).

Deep Compression (Han, Mao & Dally 2016, "Deep compression: compressing deep neural networks with
pruning, trained quantization and Huffman coding", section 3) clusters the weights ``w_i`` of a
layer into ``k = 2**b`` clusters ``C_j`` with centroids ``c_j`` minimising the within-cluster
squared error::

    argmin_C  sum_j sum_{w in C_j} |w - c_j|^2

(Lloyd's algorithm), then stores a ``b``-bit index per weight and the codebook ``c``. The initial
centroids are

* ``linear``: ``k`` points equally spaced in ``[min w, max w]`` (Han et al.'s best: it keeps the
  few large weights, which matter most, on a centroid of their own);
* ``density``: the ``(j + 1/2) / k`` quantiles of the weights (equal mass per centroid);
* ``kmeans++``: the first centroid uniformly at random, each next one drawn with probability
  proportional to the squared distance to the nearest chosen one (Arthur & Vassilvitskii 2007);
* ``optimal``: no local optimum at all: the globally optimal 1-D k-means of each row, by dynamic
  programming over the sorted weights with SMAWK row minima (Gronlund et al. 2017, "Fast exact
  k-means, k-medians and Bregman divergence clustering in 1D"), through the maintained ``kmeans1d``
  library (the one coremltools' palettization uses); Lloyd's iterations then have nothing to move.

Pruned weights (exact zeros, from an earlier pruning step) are not clustered: a row with zeros
keeps centroid 0 pinned at exactly 0.0 for them, and its other ``k - 1`` centroids are fitted to
the non-zero weights only, which are assigned among those ``k - 1`` (so the sparsity pattern,
and with it the sparse-index gaps, is kept exactly).

:class:`KMeansLevels` is the level type ``kmeans`` of the quantizer composition: the "scale" tensor
of a quantized layer is the codebook ``[*param_shape, k]``, the stored code of centroid index
``j`` is ``j + qmin`` (a signed ``b``-bit code, so the packing of uniform codes applies unchanged),
``quantize`` is the nearest-centroid index and ``dequantize`` a gather. Fine-tuning the centroids
with gradients gathered per cluster (``dL/dc_j = sum_{w_i in C_j} dL/dw_i``) is the gather's own
backward (:mod:`~torchslim.quantization.nonuniform`).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import Tensor

from torchslim.core.errors import ConfigError
from torchslim.quantization.functional import Granularity, check_bits, qrange
from torchslim.quantization.levels import register_levels

KMeansInit = Literal["linear", "density", "kmeans++", "optimal"]
INITS: tuple[str, ...] = ("linear", "density", "kmeans++", "optimal")
ROW_CHUNK_ELEMENTS = 2**22
"""Distance matrices are built for at most this many ``weight x centroid`` pairs at a time."""


def _masked_minmax(rows: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    big = torch.finfo(rows.dtype).max
    lo = torch.where(valid, rows, torch.full_like(rows, big)).amin(dim=1)
    hi = torch.where(valid, rows, torch.full_like(rows, -big)).amax(dim=1)
    empty = ~valid.any(dim=1)
    return torch.where(empty, torch.zeros_like(lo), lo), torch.where(empty, torch.zeros_like(hi), hi)


def linear_init(rows: Tensor, valid: Tensor, k: int) -> Tensor:
    """``k`` centroids equally spaced between each row's smallest and largest valid weight."""
    lo, hi = _masked_minmax(rows, valid)
    steps = torch.linspace(0.0, 1.0, k, dtype=rows.dtype)
    return lo[:, None] + (hi - lo)[:, None] * steps[None, :]


def density_init(rows: Tensor, valid: Tensor, k: int) -> Tensor:
    """The ``(j + 1/2) / k`` quantiles of each row's valid weights (equal mass per centroid)."""
    big = torch.finfo(rows.dtype).max
    ordered = torch.where(valid, rows, torch.full_like(rows, big)).sort(dim=1).values
    count = valid.sum(dim=1)
    quantiles = (torch.arange(k, dtype=rows.dtype) + 0.5) / k
    position = (quantiles[None, :] * count[:, None].to(rows.dtype)).floor().long()
    position = torch.minimum(position, (count - 1).clamp(min=0)[:, None])
    picked = ordered.gather(1, position)
    return torch.where(count[:, None] > 0, picked, torch.zeros_like(picked))


def kmeanspp_init(rows: Tensor, valid: Tensor, k: int, *, generator: torch.Generator) -> Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007), all rows at once."""
    g = rows.shape[0]
    weights = valid.to(rows.dtype)
    has_any = weights.sum(dim=1, keepdim=True) > 0
    uniform = torch.where(has_any, weights, torch.ones_like(weights))
    first = torch.multinomial(uniform, 1, generator=generator)
    centroids = [rows.gather(1, first)]
    nearest = (rows - centroids[0]) ** 2
    for _ in range(1, k):
        d2 = nearest * weights
        total = d2.sum(dim=1, keepdim=True)
        probs = torch.where(total > 0, d2, uniform)
        pick = torch.multinomial(probs, 1, generator=generator)
        centroids.append(rows.gather(1, pick))
        nearest = torch.minimum(nearest, (rows - centroids[-1]) ** 2)
    out = torch.cat(centroids, dim=1)
    return torch.where(has_any.expand(g, k), out, torch.zeros_like(out))


def optimal_init(rows: Tensor, valid: Tensor, k: int) -> Tensor:
    """The globally optimal ``k`` centroids of each row's valid weights (exact 1-D k-means, ``kmeans1d``)."""
    import kmeans1d

    out = torch.zeros(rows.shape[0], k, dtype=rows.dtype)
    for g in range(rows.shape[0]):
        values = rows[g][valid[g]].tolist()
        if not values:
            continue
        if len(set(values)) <= k:  # no more distinct values than centroids: each value its own centroid
            distinct = sorted(set(values))
            out[g] = torch.tensor(distinct + [distinct[-1]] * (k - len(distinct)), dtype=rows.dtype)
            continue
        _, centroids = kmeans1d.cluster(values, k)
        out[g] = torch.tensor(sorted(centroids), dtype=rows.dtype)
    return out


def assign(rows: Tensor, codebook: Tensor, *, pinned_zero: Tensor | None = None) -> Tensor:
    """Index of the nearest centroid for every element (``[G, N]`` int64).

    With `pinned_zero` (``[G]`` bool: centroid 0 is the pinned 0.0 of a row with pruned weights),
    exact zeros of such a row map to centroid 0 and its other weights to the nearest of the rest.
    """
    out = torch.empty(rows.shape, dtype=torch.int64)
    k = codebook.shape[1]
    per_chunk = max(1, ROW_CHUNK_ELEMENTS // max(1, rows.shape[1] * k))
    for start in range(0, rows.shape[0], per_chunk):
        r = rows[start : start + per_chunk]
        cb = codebook[start : start + per_chunk]
        dist = (r[:, :, None] - cb[:, None, :]) ** 2
        if pinned_zero is not None:
            pin = pinned_zero[start : start + per_chunk]
            nonzero = (r != 0) & pin[:, None]
            dist[..., 0] = torch.where(nonzero, torch.full_like(r, float("inf")), dist[..., 0])
            dist[..., 0] = torch.where((r == 0) & pin[:, None], torch.full_like(r, -1.0), dist[..., 0])
        out[start : start + per_chunk] = dist.argmin(dim=2)
    return out


def lloyd(rows: Tensor, valid: Tensor, centroids: Tensor, *, iterations: int) -> Tensor:
    """Lloyd's iterations on the valid elements; an empty cluster keeps its centroid."""
    k = centroids.shape[1]
    weights = valid.to(rows.dtype)
    for _ in range(iterations):
        index = assign(rows, centroids)
        sums = torch.zeros_like(centroids).scatter_add_(1, index, rows * weights)
        counts = torch.zeros_like(centroids).scatter_add_(1, index, weights)
        updated = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
        if torch.equal(updated, centroids):
            break
        centroids = updated
    return centroids.sort(dim=1).values if k > 1 else centroids


def fit_codebook(
    rows: Tensor, k: int, *, init: str = "linear", iterations: int = 30, seed: int = 0, keep_zero: bool = True
) -> tuple[Tensor, Tensor]:
    """``(codebook [G, k], pinned_zero [G])`` for the rows ``[G, N]`` of a weight.

    With `keep_zero`, a row holding exact zeros gets centroid 0 pinned at 0.0 and ``k - 1`` centroids
    fitted to its non-zeros (see the module docstring).
    """
    if init not in INITS:
        raise ConfigError(f"k-means init {init!r} is not one of {list(INITS)}.")
    rows = rows.detach().double()
    pinned = (rows == 0).any(dim=1) if keep_zero and k > 1 else torch.zeros(rows.shape[0], dtype=torch.bool)
    valid = torch.ones_like(rows, dtype=torch.bool)
    if bool(pinned.any()):
        valid = torch.where(pinned[:, None], rows != 0, valid)
    free = k - 1 if bool(pinned.any()) else k
    generator = torch.Generator().manual_seed(int(seed))
    if init == "optimal":
        fitted = optimal_init(rows, valid, free)
    else:
        if init == "linear":
            start = linear_init(rows, valid, free)
        elif init == "density":
            start = density_init(rows, valid, free)
        else:
            start = kmeanspp_init(rows, valid, free, generator=generator)
        fitted = lloyd(rows, valid, start, iterations=iterations)
    if free < k:  # rows without zeros use all k centroids: fit them apart
        everything = torch.ones_like(valid)
        if init == "optimal":
            full = optimal_init(rows, everything, k)
        else:
            full = lloyd(rows, everything, _widen(start, rows, valid), iterations=iterations)
        zero = torch.zeros(rows.shape[0], 1, dtype=rows.dtype)
        fitted = torch.where(pinned[:, None], torch.cat([zero, fitted], dim=1), full)
    return fitted.float(), pinned


def _widen(start: Tensor, rows: Tensor, valid: Tensor) -> Tensor:
    """``k - 1`` starting centroids plus one more (the row's mean) for rows that pin no zero."""
    extra = (rows * valid).sum(dim=1, keepdim=True) / valid.sum(dim=1, keepdim=True).clamp(min=1)
    return torch.cat([start, extra], dim=1).sort(dim=1).values


class KMeansLevels:
    """``2**b`` shared values per granularity row, fitted by k-means (see the module docstring)."""

    name: ClassVar[str] = "kmeans"
    affine: ClassVar[bool] = False

    def __init__(
        self, *, bits: int, symmetric: bool = True, init: str = "optimal", iterations: int = 30, seed: int = 0
    ) -> None:
        self.bits = check_bits(bits)
        if self.bits < 2:
            raise ConfigError("k-means levels need bits >= 2 (1 bit is the binary quantizer).")
        if init not in INITS:
            raise ConfigError(f"k-means init {init!r} is not one of {list(INITS)}.")
        self.symmetric = bool(symmetric)
        self.init, self.iterations, self.seed = init, int(iterations), int(seed)

    @property
    def size(self) -> int:
        """Centroids per codebook, ``2**bits``."""
        return 2**self.bits

    def code_range(self) -> tuple[int, int]:
        return qrange(self.bits)

    def scale_shape(self, granularity: Granularity, shape: torch.Size | tuple[int, ...]) -> tuple[int, ...]:
        """The codebook's shape: one row of ``2**bits`` centroids per granularity row."""
        return (*granularity.param_shape(shape), self.size)

    def qparams(self, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
        """Without data: the linear codebook of ``[lo, hi]`` (zero points unused, 0)."""
        steps = torch.linspace(0.0, 1.0, self.size)
        codebook = lo.float().unsqueeze(-1) + (hi - lo).float().unsqueeze(-1) * steps
        return codebook, torch.zeros(lo.shape, dtype=torch.int32)

    def fit(self, weight: Tensor, *, granularity: Granularity) -> tuple[Tensor, Tensor]:
        """``(codebook, zero_point)`` fitted to `weight` by k-means per granularity row."""
        rows = granularity.rows(weight.detach().float())
        codebook, _ = fit_codebook(rows, self.size, init=self.init, iterations=self.iterations, seed=self.seed)
        shape = granularity.param_shape(weight.shape)
        return codebook.reshape(*shape, self.size), torch.zeros(shape, dtype=torch.int32)

    def quantize(self, x: Tensor, scale: Tensor, zero_point: Tensor, *, granularity: Granularity) -> Tensor:
        """Signed codes ``j + qmin`` of the nearest centroid ``j`` (exact zeros to a pinned 0.0)."""
        rows = granularity.rows(x.detach().float())
        codebook = scale.detach().float().reshape(rows.shape[0], self.size)
        pinned = codebook[:, 0] == 0
        index = assign(rows.double(), codebook.double(), pinned_zero=pinned)
        return granularity.unrows((index + qrange(self.bits)[0]).to(torch.int8), x.shape)

    def dequantize(self, codes: Tensor, scale: Tensor, zero_point: Tensor, *, granularity: Granularity) -> Tensor:
        """Gather: ``w_hat = codebook[row, code - qmin]`` (differentiable in the codebook)."""
        rows = granularity.rows(codes)
        index = rows.long() - qrange(self.bits)[0]
        codebook = scale.reshape(rows.shape[0], self.size)
        return granularity.unrows(codebook.gather(1, index), codes.shape)

    def storage_bits(self) -> int:
        return self.bits

    def __repr__(self) -> str:
        return f"KMeansLevels(bits={self.bits}, init={self.init!r})"


register_levels(KMeansLevels)

__all__ = ["INITS", "KMeansLevels", "assign", "fit_codebook", "lloyd"]
