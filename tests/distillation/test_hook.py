"""`DistillationHook` in the one training loop: loss, adapters in the optimizer, clean-up, errors."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from torchslim.core import Context
from torchslim.core.errors import ConfigError, ModelError, TargetError
from torchslim.distillation import DistillationHook, distill, kd_loss
from torchslim.distillation.hook import ADAPTERS_ATTR
from torchslim.train import TrainConfig, TrainHook, train

QUIET = Context(quiet=True)


def _pair(toys, *, student_width=4):
    teacher = toys.seeded(lambda: toys.ToyCNN(width=8), 0).eval()
    student = toys.seeded(lambda: toys.ToyCNN(width=student_width, depth=2), 1)
    return teacher, student


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_loop_total_is_hintons_mixture(toys):
    teacher, student = _pair(toys)
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 10, (6,))
    hook = DistillationHook(teacher, student, temperature=3.0, alpha=0.7)
    logits = student(x)
    loop_total = F.cross_entropy(logits, y) + hook.extra_loss(None, (x, y), logits)
    with torch.no_grad():
        expected = kd_loss(logits, teacher(x), y, temperature=3.0, alpha=0.7)
    torch.testing.assert_close(loop_total, expected)
    own = DistillationHook(teacher, student, temperature=3.0, alpha=0.7, task_loss_in_loop=False)
    torch.testing.assert_close(own.extra_loss(None, (x, y), logits), expected)


def test_distill_equals_a_hand_written_kd_loop(toys):
    """The hook in the one loop trains exactly like Hinton KD written out by hand."""
    teacher = toys.seeded(
        lambda: torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)
        ),
        0,
    ).eval()
    student = toys.seeded(lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)), 1)
    by_hand = copy.deepcopy(student)
    batches = list(toys.image_loader(48, 16))
    distill(teacher, student, batches, temperature=4.0, alpha=0.9, config=TrainConfig(epochs=2, lr=1e-2), context=QUIET)
    optimizer = torch.optim.Adam(by_hand.parameters(), lr=1e-2)
    for _ in range(2):
        for x, y in batches:
            optimizer.zero_grad()
            with torch.no_grad():
                target = teacher(x)
            kd_loss(by_hand(x), target, y, temperature=4.0, alpha=0.9).backward()
            optimizer.step()
    for p, q in zip(student.parameters(), by_hand.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)


def test_adapters_are_trained_and_removed_with_the_hooks(toys):
    teacher, student = _pair(toys)
    loader = toys.image_loader(32, 8)
    x = next(iter(loader))[0][:2]
    teacher_before = _weights(teacher)
    with DistillationHook(teacher, student, pairs="auto", example_input=x) as kd:
        adapters = getattr(student, ADAPTERS_ATTR)
        assert kd.adapter_parameters > 0 and adapters is kd.losses
        start = {k: v.clone() for k, v in adapters.state_dict().items()}
        train(student, loader, config=TrainConfig(epochs=1, lr=1e-2), hooks=[kd], quiet=True)
        assert toys.hook_count(student, teacher) == 0  # removed at the end of training
        assert any(not torch.equal(start[k], v) for k, v in adapters.state_dict().items())  # optimized
        assert kd.mean_terms()["kd"] > 0 and {"hint:stem", "hint:blocks"} <= set(kd.mean_terms())
    assert not hasattr(student, ADAPTERS_ATTR)
    assert all(torch.equal(teacher_before[k], v) for k, v in teacher.state_dict().items())
    assert not teacher.training


def test_hooks_and_adapters_are_removed_after_an_exception(toys):
    teacher, student = _pair(toys)
    teacher.train()

    class Boom(TrainHook):
        def on_step_end(self, state):
            if state.step == 2:
                raise RuntimeError("boom")

    keys = set(student.state_dict())
    with pytest.raises(RuntimeError, match="boom"):
        distill(teacher, student, toys.image_loader(32, 8), pairs="auto", hooks=[Boom()], context=QUIET)
    assert toys.hook_count(student, teacher) == 0
    assert set(student.state_dict()) == keys and not hasattr(student, ADAPTERS_ATTR)
    assert teacher.training  # the teacher's mode is restored too


def test_runs_together_with_other_hooks_and_resumes(toys, tmp_path):
    teacher, student = _pair(toys)
    fresh = copy.deepcopy(student)

    class GradMask(TrainHook):
        """Stands in for gradual pruning: keeps one weight frozen through the same fine-tuning."""

        def __init__(self):
            self.steps = 0

        def on_before_optimizer_step(self, state):
            state.model.classifier.weight.grad[0].zero_()

        def on_step_end(self, state):
            self.steps += 1

    mask = GradMask()
    config = TrainConfig(epochs=2, lr=1e-2, optimizer="sgd")
    result = distill(
        teacher,
        student,
        toys.image_loader(32, 8),
        pairs="auto",
        hooks=[mask],
        config=config,
        context=Context(run_dir=tmp_path, quiet=True),
    )
    assert mask.steps == 8 and result.train.steps == 8
    assert torch.equal(student.classifier.weight[0], fresh.classifier.weight[0])
    assert not torch.equal(student.classifier.weight[1], fresh.classifier.weight[1])
    # a rerun in the same run directory finds the finished checkpoint (adapters included)
    again = distill(
        teacher,
        fresh,
        toys.image_loader(32, 8),
        pairs="auto",
        hooks=[GradMask()],
        config=config,
        context=Context(run_dir=tmp_path, quiet=True),
    )
    assert again.train.resumed_from_step == 8 and again.train.steps_run == 0
    assert again.terms == pytest.approx(result.terms)  # the hook's running sums come back from the checkpoint
    sa, sb = student.state_dict(), fresh.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_bad_input_fails_before_training(toys):
    teacher, student = _pair(toys)
    x = torch.randn(2, 1, 8, 8)
    other = toys.seeded(lambda: toys.ToyCNN(width=4, classes=3), 2)
    before = _weights(other)
    with pytest.raises(ModelError, match=r"incompatible: teacher logits \(2, 10\), student logits \(2, 3\)"):
        distill(teacher, other, toys.image_loader(16, 8), context=QUIET)
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())
    with pytest.raises(TargetError, match=r"student .* no module 'blocks\.7'.*Did you mean"):
        DistillationHook(teacher, student, pairs=[("stem", "blocks.7")], example_input=x)
    with pytest.raises(TargetError, match="teacher"):
        DistillationHook(teacher, student, pairs=["stm:stem"], example_input=x)
    with pytest.raises(ConfigError, match="temperature"):
        DistillationHook(teacher, student, temperature=0.0)
    with pytest.raises(ConfigError, match="alpha"):
        DistillationHook(teacher, student, alpha=-0.1)
    with pytest.raises(ConfigError, match="example_input"):
        DistillationHook(teacher, student, pairs="auto")
    with pytest.raises(ModelError, match="same module"):
        DistillationHook(teacher, teacher)
    with pytest.raises(ModelError, match="ranks"):
        DistillationHook(teacher, student, pairs=["stem:classifier"], example_input=x)
    assert toys.hook_count(student, teacher) == 0 and not hasattr(student, ADAPTERS_ATTR)


def test_transformer_features_and_attention_maps(toys):
    teacher = toys.tiny_bert(layers=4, hidden=16)
    student = toys.tiny_bert(layers=2, hidden=8, seed=1)
    loader = toys.token_loader()
    result = distill(
        teacher, student, loader, pairs=["auto:hidden_mse", "auto:attention_map", "auto:cosine"], context=QUIET
    )
    pairs = [(p.teacher, p.student, p.loss) for p in result.pairs]
    assert ("transformer.encoder.layer.1", "transformer.encoder.layer.0", "hidden_mse") in pairs
    assert ("transformer.encoder.layer.3.attention", "transformer.encoder.layer.1.attention", "attention_map") in pairs
    assert result.adapter_parameters == 2 * (8 * 16) + 2 * (8 * 16 + 16)  # W_h without bias, cosine with bias
    assert all(v > 0 for v in result.terms.values())
    # eager attention was switched on for the attention maps and switched back
    assert teacher.transformer.config._attn_implementation == student.transformer.config._attn_implementation != "eager"
    assert toys.hook_count(student, teacher) == 0
