"""Pruning: unstructured magnitude masks (global / layer, L1 / L2 / random, N:M), physical channel
pruning over coupled groups (channels, neurons, attention heads), schedules (one-shot, iterative,
AGP through the training loop) and per-layer sensitivity analysis.

Importing this package registers the ``magnitude_pruning`` and ``channel_pruning`` techniques in
:data:`torchslim.core.TECHNIQUES`, and (through :mod:`torchslim.graph`) the ``prune_channels`` plan
replay that lets ``torchslim.io.load`` rebuild a channel-pruned architecture.
"""

from torchslim.pruning.masks import (
    WeightMask,
    apply_mask,
    dense_weight,
    get_mask,
    is_masked,
    mask_sparsity,
    masked_layers,
    remove_mask,
    remove_masks,
)
from torchslim.pruning.schedules import AGPHook, agp_points, agp_sparsity, iterative_sparsities
from torchslim.pruning.sensitivity import SensitivityResult, sensitivity
from torchslim.pruning.structured import ChannelPruning, channel_pruning, prune_channels, round_keep
from torchslim.pruning.unstructured import (
    MagnitudePruner,
    MagnitudePruning,
    magnitude_prune,
    magnitude_pruning,
    nm_mask,
    parse_pattern,
    weight_scores,
)

__all__ = [
    "AGPHook",
    "ChannelPruning",
    "MagnitudePruner",
    "MagnitudePruning",
    "SensitivityResult",
    "WeightMask",
    "agp_points",
    "agp_sparsity",
    "apply_mask",
    "channel_pruning",
    "dense_weight",
    "get_mask",
    "is_masked",
    "iterative_sparsities",
    "magnitude_prune",
    "magnitude_pruning",
    "mask_sparsity",
    "masked_layers",
    "nm_mask",
    "parse_pattern",
    "prune_channels",
    "remove_mask",
    "remove_masks",
    "round_keep",
    "sensitivity",
    "weight_scores",
]
