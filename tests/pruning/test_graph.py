"""torchslim.graph: coupled channel groups, physical cuts and their replay, BN folding, surgery."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from torchslim.core.errors import ModelError
from torchslim.core.plans import model_plan
from torchslim.graph import (
    ChannelGraph,
    apply_channel_ops,
    fold_batchnorm,
    foldable_pairs,
    get_module,
    replace_modules,
    replay_fold_batchnorm,
    set_module,
)

X8 = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def _group_with(graph: ChannelGraph, layer: str):
    return next(g for g in graph.groups() if layer in g.out_layers)


def test_residual_adds_couple_the_stem_and_every_block_output(toys):
    model = toys.seeded(toys.ResNet)
    group = _group_with(ChannelGraph(model, X8), "stem")
    assert set(group.out_layers) >= {"stem", "stem_bn", "block1.conv2", "block1.bn2", "block2.conv2", "block2.bn2"}
    assert set(group.in_layers) >= {"block1.conv1", "block2.conv1", "head"}
    assert group.channels == 16 and not group.output_coupled


def test_the_classifier_group_is_marked_output_coupled(toys):
    graph = ChannelGraph(toys.seeded(toys.ResNet), X8)
    assert _group_with(graph, "classifier").output_coupled
    assert not _group_with(graph, "head").output_coupled


def test_pruning_a_residual_group_keeps_the_forward_working_and_shrinks_every_member(toys):
    model = toys.seeded(toys.ResNet).eval()
    graph = ChannelGraph(model, X8)
    group = _group_with(graph, "stem")
    ops = graph.prune(group, [0, 3, 5, 7])
    assert model.stem.out_channels == 12 and model.block1.conv2.out_channels == 12
    assert model.block1.conv1.in_channels == 12 and model.head.in_channels == 12 and model.stem_bn.num_features == 12
    assert model(X8).shape == (2, 4)
    assert {op["module"] for op in ops if "module" in op} >= {"stem", "block1.conv1", "head"}


def test_concat_maps_branch_indices_into_the_consumer(toys):
    model = toys.seeded(toys.ConcatNet).eval()
    with torch.no_grad():
        model.b.weight[:2] = 0
        model.b.bias[:2] = 0
    reference = model(X8)
    graph = ChannelGraph(model, X8)
    group = _group_with(graph, "b")
    assert "mix" in group.in_layers
    before = model.mix.weight.detach().clone()
    graph.prune(group, [0, 1])
    assert model.b.out_channels == 8 and model.mix.in_channels == 14
    # branch b occupies input channels 6..15 of mix; channels 6 and 7 were removed
    kept = [c for c in range(16) if c not in (6, 7)]
    assert torch.equal(model.mix.weight, before[:, kept])
    torch.testing.assert_close(model(X8), reference)


def test_grouped_and_depthwise_convolutions_are_sliced_consistently(toys):
    model = toys.seeded(toys.GroupedNet).eval()
    with torch.no_grad():  # dead channels: removing them must not change the output
        model.pw1.weight[[0, 4, 8, 12]] = 0
        model.pw1.bias[[0, 4, 8, 12]] = 0
    reference = model(X8)
    graph = ChannelGraph(model, X8)
    feeding = _group_with(graph, "pw1")
    assert feeding.slices == 4 and "grouped" in feeding.in_layers
    own = _group_with(graph, "grouped")
    assert own.slices == 4 and {"dw", "bn"} <= set(own.out_layers) and "pw2" in own.in_layers
    # one channel from each of the 4 slices of 4, on both sides of the grouped conv
    graph.prune(feeding, [0, 4, 8, 12])
    torch.testing.assert_close(model(X8), reference)
    graph.prune(_group_with(graph, "grouped"), [1, 5, 9, 13])
    assert model.grouped.weight.shape == (12, 3, 3, 3) and model.grouped.groups == 4
    assert model.dw.groups == 12 and model.bn.num_features == 12 and model.pw2.in_channels == 12
    assert model(X8).shape == (2, 3)


def test_attention_projections_form_one_group_with_head_metadata(toys):
    pytest.importorskip("transformers")
    model = toys.tiny_bert(num_heads=4, hidden=32)
    graph = ChannelGraph(model, toys.bert_input())
    attn = [g for g in graph.groups() if g.attention]
    assert len(attn) == 2
    g = attn[0]
    assert g.num_heads == 4 and g.head_dim == 8
    names = set(g.out_layers)
    assert {n.rsplit(".", 1)[-1] for n in names} >= {"query", "key", "value"}
    hidden = [g for g in graph.groups() if g.embedding]
    assert hidden, "the residual stream couples the embeddings"


def test_replaying_recorded_ops_rebuilds_the_same_architecture_and_outputs(toys):
    model = toys.seeded(toys.ResNet).eval()
    fresh = copy.deepcopy(model)
    graph = ChannelGraph(model, X8)
    ops = graph.prune(_group_with(graph, "stem"), [1, 2])
    ops += graph.prune(_group_with(graph, "block1.conv1"), list(range(8)))
    apply_channel_ops(fresh, ops)
    assert toys.state_equal(model, fresh)
    assert torch.equal(model(X8), fresh(X8))


def test_replay_rejects_ops_that_do_not_fit(toys):
    model = toys.seeded(toys.CNN)
    with pytest.raises(ModelError, match="conv1"):
        apply_channel_ops(model, [{"module": "conv1", "pruner": "ConvPruner", "fn": "out", "dim": 1, "idxs": [99]}])
    with pytest.raises(ModelError, match="every channel"):
        apply_channel_ops(
            model, [{"module": "conv1", "pruner": "ConvPruner", "fn": "out", "dim": 1, "idxs": list(range(8))}]
        )
    with pytest.raises(ModelError, match="unknown pruner"):
        apply_channel_ops(model, [{"module": "conv1", "pruner": "EvilPruner", "fn": "out", "dim": 1, "idxs": [0]}])
    with pytest.raises(ModelError, match="cannot set"):
        apply_channel_ops(model, [{"set": "conv1", "attr": "forward", "value": 1}])
    with pytest.raises(ModelError, match="no layer"):
        apply_channel_ops(model, [{"module": "conv9", "pruner": "ConvPruner", "fn": "out", "dim": 1, "idxs": [0]}])
    assert model.conv1.out_channels == 8


def test_cutting_every_channel_of_a_layer_is_refused_before_anything_changes(toys):
    model = toys.seeded(toys.CNN)
    before = copy.deepcopy(model)
    graph = ChannelGraph(model, X8)
    with pytest.raises(ModelError, match="every out.*conv1"):
        graph.prune(_group_with(graph, "conv1"), list(range(8)))
    assert toys.state_equal(model, before)


def test_untraceable_models_raise_a_model_error(toys):
    with pytest.raises(ModelError, match="cannot be traced"):
        ChannelGraph(toys.seeded(toys.Detached), torch.randn(2, 4))
    with pytest.raises(ModelError, match="cannot be traced.*failed"):
        ChannelGraph(toys.seeded(toys.CNN), torch.randn(2, 3, 8, 8))  # wrong channel count


def test_tracing_restores_modes_and_requires_grad(toys):
    model = toys.seeded(toys.CNN).train()
    model.conv1.weight.requires_grad_(False)
    ChannelGraph(model, X8)
    assert model.training and model.bn1.training
    assert not model.conv1.weight.requires_grad and model.conv2.weight.requires_grad


def _randomize_bn(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.mark.parametrize("use_example", [False, True])
def test_fold_batchnorm_keeps_outputs_and_records_a_replayable_plan(toys, use_example):
    model = toys.seeded(toys.ResNet).eval()
    _randomize_bn(model)
    folded = fold_batchnorm(model, X8 if use_example else None)
    assert isinstance(model.stem_bn, nn.BatchNorm2d), "the input model is not changed"
    assert isinstance(folded.stem_bn, nn.Identity) and isinstance(folded.block1.bn2, nn.Identity)
    assert folded.stem.bias is not None
    torch.testing.assert_close(folded(X8), model(X8), rtol=1e-5, atol=1e-5)
    entry = model_plan(folded)[-1]
    assert entry["kind"] == "fold_batchnorm" and ["stem", "stem_bn"] in entry["pairs"]
    rebuilt = replay_fold_batchnorm(toys.seeded(toys.ResNet).eval(), entry)
    rebuilt.load_state_dict(folded.state_dict())
    torch.testing.assert_close(rebuilt(X8), folded(X8))


def test_fold_skips_a_conv_whose_output_is_also_used_elsewhere(toys):
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y

    model = toys.seeded(Shared).eval()
    assert foldable_pairs(model) == []
    assert foldable_pairs(model, X8) == []
    assert foldable_pairs(toys.seeded(toys.CNN)) == [("conv1", "bn1"), ("conv2", "bn2")]


def test_surgery_helpers_name_the_layer_at_fault(toys):
    model = toys.seeded(toys.CNN)
    old = set_module(model, "bn1", nn.Identity())
    assert isinstance(old, nn.BatchNorm2d) and isinstance(get_module(model, "bn1"), nn.Identity)
    with pytest.raises(ModelError, match="has no layer 'conv3'") as info:
        get_module(model, "conv3")
    assert "Did you mean" not in str(info.value)  # graph names are not typed by the user
    seq = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
    replaced = replace_modules(seq, lambda n, m: isinstance(m, nn.ReLU), lambda n, m: nn.Tanh())
    assert replaced == ["1"] and isinstance(seq[1], nn.Tanh)


def test_index_ranges_and_compacted_ops_round_trip(toys):
    from torchslim.graph import compact_ops, decode_indices, encode_indices

    assert encode_indices([8, 0, 1, 2, 5, 7]) == "0-2,5,7-8"
    assert decode_indices("0-2,5,7-8") == [0, 1, 2, 5, 7, 8] and decode_indices([3, 1]) == [3, 1]
    assert encode_indices([]) == "" and decode_indices("") == []
    with pytest.raises(ModelError, match="range"):
        decode_indices("1-x")
    model = toys.seeded(toys.ResNet).eval()
    fresh = copy.deepcopy(model)
    graph = ChannelGraph(model, X8)
    ops = graph.prune(_group_with(graph, "stem"), [1, 2, 3, 9])
    compact = compact_ops(ops)
    assert len(compact) < len(ops) and compact[0]["idxs"] == "1-3,9"
    apply_channel_ops(fresh, compact)
    assert toys.state_equal(model, fresh)
