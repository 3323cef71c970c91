"""Model graph utilities shared by pruning and quantization: coupled channel groups (a thin API
over Torch-Pruning's dependency graph), module surgery, and BatchNorm folding.

Importing this package registers the ``prune_channels`` and ``fold_batchnorm`` plan replays with
:func:`torchslim.core.plans.register_plan_replay`, so loading an artifact can rebuild a pruned or
folded architecture.
"""

from torchslim.graph.adapters import ROOT_TYPES, conv1d_type, root_types, without_cache
from torchslim.graph.attention import attention_layers, head_dim_of, heads_of, set_heads
from torchslim.graph.bn import fold_batchnorm, foldable_pairs, replay_fold_batchnorm
from torchslim.graph.channel_ops import (
    PRUNE_CHANNELS_KIND,
    SETTABLE_ATTRS,
    apply_channel_ops,
    compact_ops,
    decode_indices,
    encode_indices,
    replay_prune_channels,
)
from torchslim.graph.dependency import (
    SEARCH_TIME_LIMIT_S,
    ChannelGraph,
    ChannelGroup,
    GroupMember,
    flat_tensors,
)
from torchslim.graph.surgery import (
    TiedSet,
    call_with,
    get_module,
    module_names,
    named_leaf_modules,
    parent_of,
    replace_modules,
    retie,
    set_module,
    tied_parameters,
)

__all__ = [
    "ChannelGraph",
    "ChannelGroup",
    "GroupMember",
    "PRUNE_CHANNELS_KIND",
    "ROOT_TYPES",
    "SEARCH_TIME_LIMIT_S",
    "SETTABLE_ATTRS",
    "TiedSet",
    "apply_channel_ops",
    "attention_layers",
    "head_dim_of",
    "heads_of",
    "compact_ops",
    "conv1d_type",
    "decode_indices",
    "encode_indices",
    "flat_tensors",
    "call_with",
    "fold_batchnorm",
    "foldable_pairs",
    "get_module",
    "module_names",
    "named_leaf_modules",
    "parent_of",
    "replace_modules",
    "replay_fold_batchnorm",
    "replay_prune_channels",
    "retie",
    "root_types",
    "set_heads",
    "set_module",
    "tied_parameters",
    "without_cache",
]
