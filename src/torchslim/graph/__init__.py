"""Model graph utilities shared by pruning and quantization: coupled channel groups (a thin API
over Torch-Pruning's dependency graph), module surgery, and BatchNorm folding.

Importing this package registers the ``prune_channels`` and ``fold_batchnorm`` plan replays with
:mod:`torchslim.io.artifact`, so ``torchslim.io.load`` can rebuild a pruned or folded architecture.
"""

from torchslim.graph.bn import fold_batchnorm, foldable_pairs, replay_fold_batchnorm
from torchslim.graph.dependency import (
    ROOT_TYPES,
    ChannelGraph,
    ChannelGroup,
    GroupMember,
    apply_channel_ops,
    compact_ops,
    decode_indices,
    encode_indices,
)
from torchslim.graph.surgery import (
    call_with,
    get_module,
    module_names,
    named_leaf_modules,
    parent_of,
    replace_modules,
    set_module,
)

PRUNE_CHANNELS_KIND = "prune_channels"


def replay_prune_channels(model, entry):  # type: ignore[no-untyped-def]
    """Plan replay of kind ``prune_channels``: apply the recorded channel cuts to `model`."""
    return apply_channel_ops(model, entry.get("ops") or [])


def _register_plan_replays() -> None:
    from torchslim.io.artifact import PLAN_REPLAYS, register_plan_replay

    if PRUNE_CHANNELS_KIND not in PLAN_REPLAYS:
        register_plan_replay(PRUNE_CHANNELS_KIND)(replay_prune_channels)
    if "fold_batchnorm" not in PLAN_REPLAYS:
        register_plan_replay("fold_batchnorm")(replay_fold_batchnorm)


_register_plan_replays()

__all__ = [
    "ChannelGraph", "ChannelGroup", "GroupMember", "PRUNE_CHANNELS_KIND", "ROOT_TYPES", "apply_channel_ops",
    "compact_ops", "decode_indices", "encode_indices",
    "call_with", "fold_batchnorm", "foldable_pairs", "get_module", "module_names", "named_leaf_modules",
    "parent_of", "replace_modules", "replay_fold_batchnorm", "replay_prune_channels", "set_module",
]
