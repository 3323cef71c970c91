"""Feature taps (hooks removed cleanly, also on exceptions) and pairing by relative depth."""

from __future__ import annotations

import pytest
import torch

from torchslim.core.errors import ModelError, TargetError
from torchslim.distillation import FeatureTaps, candidate_layers, find_stages, pair_by_depth
from torchslim.distillation.taps import pick_feature


def test_taps_record_outputs_and_are_removed(toys):
    model = toys.seeded(toys.ToyCNN)
    x = torch.randn(2, 1, 8, 8)
    with FeatureTaps(model, ["stem", "blocks.1"]) as taps:
        assert toys.hook_count(model) == 2
        model(x)
        assert taps.outputs["stem"].shape == (2, 8, 8, 8)
        assert taps.outputs["blocks.1"].shape == (2, 16, 4, 4)
    assert toys.hook_count(model) == 0 and taps.outputs == {}


def test_taps_are_removed_when_the_block_raises(toys):
    model = toys.seeded(toys.ToyCNN)
    with pytest.raises(RuntimeError):
        with FeatureTaps(model, ["stem"]):
            model(torch.randn(2, 3, 8, 8))  # wrong channel count: the stem conv raises
    assert toys.hook_count(model) == 0


def test_unknown_tap_name_is_a_clear_error(toys):
    model = toys.seeded(toys.ToyCNN)
    with pytest.raises(TargetError, match=r"no module 'blocks\.9'.*Did you mean"):
        FeatureTaps(model, ["blocks.9"], role="student")
    assert toys.hook_count(model) == 0


def test_pair_by_relative_depth():
    t6 = [f"t{i}" for i in range(6)]
    s3 = [f"s{i}" for i in range(3)]
    assert pair_by_depth(t6, s3) == [("t1", "s0"), ("t3", "s1"), ("t5", "s2")]
    assert pair_by_depth(s3, s3) == [("s0", "s0"), ("s1", "s1"), ("s2", "s2")]
    t7 = [f"t{i}" for i in range(7)]
    assert [t for t, _ in pair_by_depth(t7, ["a", "b", "c", "d"])] == ["t1", "t3", "t4", "t6"]
    assert [t for t, _ in pair_by_depth(["t0", "t1"], ["a", "b", "c", "d"])] == ["t0", "t0", "t1", "t1"]
    with pytest.raises(ModelError):
        pair_by_depth([], s3)


def test_candidate_layers_and_stages(toys):
    cnn = toys.seeded(toys.ToyCNN)
    assert candidate_layers(cnn) == ["stem", "blocks"]  # the classifier head is left out
    assert [n for n, _ in find_stages(cnn)] == ["blocks"]
    bert = toys.tiny_bert(layers=3)
    assert candidate_layers(bert) == [f"transformer.encoder.layer.{i}" for i in range(3)]
    assert [n for n, _ in find_stages(bert)] == ["transformer.encoder.layer"]


def test_pick_feature():
    a, w = torch.zeros(2, 5, 4), torch.zeros(2, 3, 5, 5)
    assert pick_feature((a, w)) is a
    assert pick_feature((a, w), kind="attention") is w
    with pytest.raises(ModelError, match="no attention weights"):
        pick_feature((a, None), kind="attention", name="layer.0.attention")
