"""NaN / Inf weights: refused in the model given to compress or analyze, and after any recipe step."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

import torchslim as ts
from torchslim.core.config import TechniqueConfig
from torchslim.core.errors import NonFiniteWeightsError
from torchslim.core.technique import TECHNIQUES, StepOutcome


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def _data() -> ts.DataSplits:
    x = torch.randn(16, 4)
    batches = [(x[i : i + 4], torch.randint(0, 3, (4,))) for i in range(0, 16, 4)]
    return ts.DataSplits(train=batches, calibration=batches, test=batches, num_classes=3)


def test_a_model_with_nan_weights_is_refused_before_any_work():
    model = _model()
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteWeightsError, match=r"the model to compress: tensor\(s\) \['0.weight'\]"):
        ts.compress(model, _data(), recipe="int8", repeats=1, quiet=True, runtime="pytorch")
    with pytest.raises(NonFiniteWeightsError, match="the model to analyze"):
        ts.analyze(model, _data(), repeats=1)
    stats = ts.analyze(model, _data(), repeats=1, allow_nonfinite=True)  # the escape hatch
    assert stats.params > 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class PoisonStep(TechniqueConfig):
    """A test-only step that writes Inf into a bias (a broken technique)."""

    name: ClassVar[str] = "test-poison-step"


@TECHNIQUES.handles(PoisonStep)
def _poison(model: nn.Module, config: PoisonStep, *, targets: Any, context: Any) -> StepOutcome:
    with torch.no_grad():
        model[2].bias[1] = float("inf")
    return StepOutcome(model=model)


def test_a_step_that_leaves_inf_in_the_weights_is_named():
    recipe = ts.Recipe([ts.Step(PoisonStep())])
    with pytest.raises(NonFiniteWeightsError, match=r"steps\[0\] \(test-poison-step\): tensor\(s\) \['2.bias'\]"):
        ts.compress(_model(), _data(), recipe=recipe, repeats=1, quiet=True, runtime="pytorch")
