"""TrainConfig validation and the learning-rate schedules."""

from __future__ import annotations

import math

import pytest

from torchslim.core.errors import ConfigError
from torchslim.train import TrainConfig, TrainHook, schedule_factor, train


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epochs", -1),
        ("max_steps", -5),
        ("lr", 0.0),
        ("lr", -1e-3),
        ("lr", float("inf")),
        ("momentum", 1.0),
        ("momentum", -0.1),
        ("weight_decay", -1.0),
        ("warmup_steps", -1),
        ("step_size", 0),
        ("gamma", 0.0),
        ("gamma", 1.5),
        ("grad_clip", 0.0),
        ("checkpoint_every", 0),
        ("log_every", 0),
        ("early_stop_patience", 0),
        ("early_stop_min_delta", -0.1),
    ],
)
def test_out_of_range_values_name_the_field(field, value):
    with pytest.raises(ConfigError, match=rf"TrainConfig\.{field}="):
        TrainConfig(**{field: value})


def test_unknown_choices_and_keys_suggest_a_fix():
    with pytest.raises(ConfigError, match=r"optimizer='adm'.*Did you mean 'adam'"):
        TrainConfig(optimizer="adm")
    with pytest.raises(ConfigError, match=r"schedule='cosin'.*Did you mean 'cosine'"):
        TrainConfig(schedule="cosin")
    with pytest.raises(ConfigError, match=r"Unknown key 'learning_rate'"):
        TrainConfig.from_dict({"learning_rate": 0.1})
    with pytest.raises(ConfigError, match=r"TrainConfig\.epochs must be an integer"):
        TrainConfig(epochs=1.5)
    with pytest.raises(TypeError):
        TrainConfig(3)  # keyword-only


def test_config_is_frozen_and_round_trips():
    config = TrainConfig(epochs=2, lr=0.5, schedule="cosine", grad_clip=1, max_steps=None)
    assert config.grad_clip == 1.0 and isinstance(config.grad_clip, float)
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(AttributeError):
        config.lr = 1.0  # type: ignore[misc]  # assigning to a frozen field is what this checks
    assert "checkpoint_every" not in config.identity() and "lr" in config.identity()


def _expected(schedule: str, step: int, total: int = 10, warmup: int = 0) -> float:
    if step < warmup:
        return (step + 1) / (warmup + 1)
    p = (step - warmup) / (total - warmup)
    return {
        "constant": 1.0,
        "linear": 1.0 - p,
        "cosine": 0.5 * (1 + math.cos(math.pi * p)),
    }[schedule]


def test_schedule_factor_at_known_steps():
    assert schedule_factor(TrainConfig(schedule="constant"), 7, 10, None) == 1.0
    linear = TrainConfig(schedule="linear")
    assert [schedule_factor(linear, s, 10, None) for s in (0, 5, 9)] == pytest.approx([1.0, 0.5, 0.1])
    cosine = TrainConfig(schedule="cosine")
    assert [schedule_factor(cosine, s, 10, None) for s in (0, 5, 10)] == pytest.approx([1.0, 0.5, 0.0])
    step = TrainConfig(schedule="step", step_size=3, gamma=0.5)
    assert [schedule_factor(step, s, None, None) for s in range(7)] == pytest.approx([1, 1, 1, 0.5, 0.5, 0.5, 0.25])
    per_epoch = TrainConfig(schedule="step", gamma=0.1)  # step_size None -> one epoch
    assert schedule_factor(per_epoch, 4, None, 4) == pytest.approx(0.1)
    warm = TrainConfig(schedule="linear", warmup_steps=3)
    assert [schedule_factor(warm, s, 13, None) for s in (0, 1, 2, 3, 8)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 0.5])


def test_horizonless_schedules_need_a_length():
    with pytest.raises(ConfigError, match="max_steps"):
        schedule_factor(TrainConfig(schedule="cosine"), 0, None, None)
    with pytest.raises(ConfigError, match="step_size"):
        schedule_factor(TrainConfig(schedule="step"), 0, None, None)


class _LrRecorder(TrainHook):
    def __init__(self):
        self.lrs = []

    def on_before_optimizer_step(self, state):
        self.lrs.append(state.optimizer.param_groups[0]["lr"])


@pytest.mark.parametrize(
    ("schedule", "warmup"), [("constant", 0), ("linear", 0), ("cosine", 0), ("cosine", 2), ("linear", 4)]
)
def test_the_loop_uses_the_schedule_at_every_step(toys, schedule, warmup):
    recorder = _LrRecorder()
    loader = toys.loader(n=40, batch_size=8)  # 5 batches per epoch, 10 steps in all
    config = TrainConfig(epochs=2, lr=0.2, optimizer="sgd", schedule=schedule, warmup_steps=warmup)
    result = train(toys.model(), loader, config=config, hooks=[recorder])
    assert result.steps == 10
    expected = [0.2 * _expected(schedule, s, 10, warmup) for s in range(10)]
    assert recorder.lrs == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_the_step_schedule_decays_every_epoch_by_default(toys):
    recorder = _LrRecorder()
    config = TrainConfig(epochs=3, lr=1.0, optimizer="sgd", schedule="step", gamma=0.5)
    train(toys.model(), toys.loader(n=24, batch_size=8), config=config, hooks=[recorder])
    assert recorder.lrs == pytest.approx([1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25])


def test_cosine_without_len_needs_max_steps(toys):
    batches = list(toys.loader(n=32, batch_size=8))

    def stream():
        yield from batches

    class Stream:
        def __iter__(self):
            return stream()

    with pytest.raises(ConfigError, match="max_steps"):
        train(toys.model(), Stream(), config=TrainConfig(schedule="cosine"))
    result = train(toys.model(), Stream(), config=TrainConfig(schedule="cosine", max_steps=3, epochs=5))
    assert result.steps == 3
    assert result.history[-1]["lr"] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 2 / 3)))
