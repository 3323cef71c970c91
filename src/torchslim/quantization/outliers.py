"""Outlier channel splitting (Zhao, Hu, Dotzel, De Sa & Zhang 2019, "Improving neural network
quantization without retraining using outlier channel splitting", ICML).

``x W^T = sum_j x_j W_j``; writing input channel ``j`` as ``m_j`` copies ``x_j / m_j`` (and its
weight column ``W_j`` repeated ``m_j`` times) changes nothing in exact arithmetic but divides the
channel's range by ``m_j``, so a per-tensor activation scale no longer has to stretch over one
outlier channel.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def outlier_split(channel_absmax: Tensor, k: int, *, max_extra: int | None = None, min_ratio: float = 2.0) -> Tensor:
    """The input channels to duplicate so that no channel's range exceeds the ``(k+1)``-th largest one.

    With ``c`` the ``(k+1)``-th largest calibration range ``max |x_j|``, each of the `k` largest
    channels gets ``m_j = ceil(max |x_j| / c)`` copies; the weight's ranges are unchanged (columns
    are repeated, not scaled). At most `max_extra` copies are added (default: one per 16 input
    channels), the largest channels first; nothing is split unless the largest range is at least
    `min_ratio` times ``c`` (each split costs a pass over the input at run time). Returns the
    original index of every extra copy (a channel appears ``m_j - 1`` times; empty when no channel
    stands out).
    """
    amax = channel_absmax.detach().float().reshape(-1)
    if k <= 0 or amax.numel() <= k:
        return torch.zeros(0, dtype=torch.int64)
    top = torch.topk(amax, k + 1)
    ceiling = float(top.values[-1])
    if ceiling <= 0 or float(top.values[0]) < min_ratio * ceiling:
        return torch.zeros(0, dtype=torch.int64)
    budget = amax.numel() // 16 if max_extra is None else max_extra
    extra: list[int] = []
    for index, value in zip(top.indices[:-1].tolist(), top.values[:-1].tolist(), strict=True):
        copies = min(math.ceil(value / ceiling - 1e-6) - 1, budget - len(extra))
        extra += [index] * max(copies, 0)
    return torch.tensor(sorted(extra), dtype=torch.int64)


def split_multipliers(in_features: int, split: Tensor) -> tuple[Tensor, Tensor]:
    """Input multipliers of outlier channel splitting: channel ``j`` with ``c_j`` extra copies in
    `split` is divided by ``m_j = 1 + c_j`` in the original slot and in each copy."""
    copies = torch.ones(in_features, dtype=torch.float32)
    if split.numel():
        copies.index_add_(0, split.long(), torch.ones(split.numel(), dtype=torch.float32))
    main = 1.0 / copies
    return main, main[split.long()]


def fold_split_weight(weight: Tensor, split: Tensor) -> Tensor:
    """The ``[out, in]`` weight a split layer computes with: ``W'[:, :in] / m + sum of its copies / m``."""
    in_features = weight.shape[1] - split.numel()
    main, extra = split_multipliers(in_features, split)
    folded = weight[:, :in_features] * main.to(weight)
    return folded.index_add(1, split.long(), weight[:, in_features:] * extra.to(weight))


__all__ = ["fold_split_weight", "outlier_split", "split_multipliers"]
