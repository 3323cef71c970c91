"""Schedules: AGP values (Zhu & Gupta 2017), iterative compounding, AGP through the training loop."""

from __future__ import annotations

import types

import pytest
import torch

from torchslim.core import TECHNIQUES, Context, DataSplits
from torchslim.core.errors import ConfigError
from torchslim.pruning import (
    AGPHook,
    MagnitudePruner,
    MagnitudePruning,
    agp_points,
    agp_sparsity,
    get_mask,
    iterative_sparsities,
)
from torchslim.train import TrainConfig


def test_agp_follows_the_cubic_formula():
    kw = dict(initial=0.1, final=0.9, start_step=100, end_step=1100, frequency=1)
    assert agp_sparsity(0, **kw) == 0.1
    assert agp_sparsity(100, **kw) == pytest.approx(0.1)
    assert agp_sparsity(1100, **kw) == 0.9
    assert agp_sparsity(5000, **kw) == 0.9
    # s_t = s_f + (s_i - s_f) (1 - (t - t0)/(n dt))^3 at t = 600: progress 0.5
    assert agp_sparsity(600, **kw) == pytest.approx(0.9 + (0.1 - 0.9) * 0.5**3)
    assert agp_sparsity(350, **kw) == pytest.approx(0.9 - 0.8 * 0.75**3)


def test_agp_changes_only_every_frequency_steps_and_never_decreases():
    kw = dict(initial=0.0, final=0.8, start_step=0, end_step=100, frequency=10)
    values = [agp_sparsity(t, **kw) for t in range(0, 120)]
    assert all(b >= a for a, b in zip(values, values[1:], strict=False))
    assert values[10] == values[19] != values[20]
    assert values[15] == pytest.approx(0.8 - 0.8 * 0.9**3)
    assert agp_points(start_step=0, end_step=100, frequency=30) == [0, 30, 60, 90, 100]


def test_agp_rejects_impossible_windows():
    with pytest.raises(ConfigError, match="end_step"):
        agp_sparsity(5, initial=0, final=0.5, start_step=10, end_step=10)
    with pytest.raises(ConfigError, match="end_step=5"):
        MagnitudePruning(schedule="agp", train=TrainConfig(epochs=1), start_step=10, end_step=5)


def test_iterative_sparsities_compound_to_the_target():
    values = iterative_sparsities(0.9, 4)
    assert values[-1] == 0.9
    alive = [1 - s for s in values]
    ratios = [alive[0]] + [b / a for a, b in zip(alive, alive[1:], strict=False)]
    assert ratios == pytest.approx([0.1**0.25] * 4)
    assert iterative_sparsities(0.5, 1) == [0.5]


def test_agp_hook_prunes_on_schedule_with_a_fake_state(toys):
    model = toys.seeded(toys.MLP)
    pruner = MagnitudePruner([("fc1", model.fc1), ("fc2", model.fc2)], scope="layer")
    hook = AGPHook(pruner, final=0.75, start_step=2, end_step=10, frequency=2)
    state = types.SimpleNamespace(step=0, total_steps=12)
    hook.on_train_start(state)
    assert get_mask(model.fc1) is None  # before t0 nothing happens
    seen = []
    for step in range(1, 13):
        state.step = step
        hook.on_step_end(state)
        mask = get_mask(model.fc1)
        seen.append(0.0 if mask is None else 1 - mask.float().mean().item())
    expected = [agp_sparsity(t, initial=0.0, final=0.75, start_step=2, end_step=10, frequency=2) for t in range(1, 13)]
    assert seen == pytest.approx(expected, abs=1 / model.fc1.weight.numel())
    assert [s for s, _ in hook.history] == [4, 6, 8, 10]
    hook.on_train_end(state)
    assert hook.state_dict()["current"] == 0.75


def test_agp_through_the_training_loop_reaches_the_target_and_keeps_learning(toys):
    data = toys.blobs(256)
    loader = toys.make_loader(data, 32, shuffle=True)
    config = MagnitudePruning(
        sparsity=0.8, scope="layer", schedule="agp", train=TrainConfig(epochs=6, lr=2e-2), start_step=4, frequency=4
    )
    model = toys.seeded(toys.MLP)
    out = TECHNIQUES.handler_for(config)(model, config, targets=None, context=Context(data=DataSplits(train=loader)))
    events = out.info["rounds"][0]["events"]
    total = 6 * 8
    end = int(0.75 * total)
    steps = [s for s, _ in events]
    assert steps[0] >= 4 and steps[-1] == end and all(b > a for a, b in zip(steps, steps[1:], strict=False))
    sparsities = [s for _, s in events]
    assert sparsities[-1] == pytest.approx(0.8) and all(b > a for a, b in zip(sparsities, sparsities[1:], strict=False))
    assert out.info["sparsity"] == pytest.approx(0.8, abs=2e-3)
    x, y = data.tensors
    with torch.no_grad():
        assert (out.model(x).argmax(1) == y).float().mean().item() > 0.7
