"""One trial: a point whose model before training is the same as an earlier trial's that missed a
cost bound is stopped with that trial's costs, without being built or measured again."""

from __future__ import annotations

import torch
from torch import nn

from torchslim.core import Context, DataSplits
from torchslim.search.evaluate import Costs
from torchslim.search.space import SearchSpace
from torchslim.search.target import Target
from torchslim.search.trial import TrialRunner


class CountingMeter:
    """A meter whose every candidate misses a latency bound of 0.5 (0.9 of the original)."""

    def __init__(self) -> None:
        self.calls = 0

    def measure(self, model: nn.Module, *, config=None, precise: bool = True) -> Costs:
        self.calls += 1
        return Costs(size=0.3, latency=0.9, energy=0.5, macs=1.0, bytes=100)


def test_a_point_that_only_differs_in_training_reuses_the_missed_costs():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    space = SearchSpace(channel_max={}, bit_choices={}, sparsity_max={}, level_types=["float"], finetune_steps=[0, 100])
    meter = CountingMeter()
    batches = [(torch.randn(8, 4), torch.randint(0, 3, (8,)))]
    runner = TrialRunner(
        original=model,
        space=space,
        target=Target(latency=0.5, max_drop=1.0),
        meter=meter,  # type: ignore[arg-type]  # a stand-in with the same measure()
        context=Context(data=DataSplits(train=batches, validation=batches), seed=0, quiet=True),
        quality=lambda m: 0.5,
        baseline_quality=0.5,
        metric="accuracy",
    )
    first_point = {"levels": "float", "steps": 100, "distill": False}
    second_point = {"levels": "float", "steps": 0, "distill": True}
    first = runner.run(first_point, space.recipe(first_point))
    second = runner.run(second_point, space.recipe(second_point))
    assert meter.calls == 1
    assert first["stopped_early"] == "misses the latency bound before fine-tuning"
    assert second["stopped_early"].startswith(first["stopped_early"]) and "earlier trial" in second["stopped_early"]
    assert second["costs"] == first["costs"] and not second["feasible"]


def test_latency_can_be_a_fraction_of_the_pytorch_eager_model(tmp_path):
    from torchslim.search.evaluate import CostMeter, EagerBaseline

    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4)).eval()
    meter = CostMeter(
        model, torch.randn(1, 16), workdir=tmp_path, baseline_runtime="pytorch-eager", rounds=2, repeats=3
    )
    assert isinstance(meter.base_deployment, EagerBaseline) and meter.base_latency_ms > 0
    assert meter.baseline(0.5, "accuracy").latency_runtime == "pytorch-eager"
    costs = meter.measure(model, precise=False)  # the same model on onnxruntime, timed against eager
    assert costs.latency > 0 and costs.size == 1.0
