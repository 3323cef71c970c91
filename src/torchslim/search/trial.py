"""One trial: a recipe from the space, its cost measured before fine-tuning (a trial that cannot meet
the target's cost bounds stops there: cost does not depend on the fine-tuned weights), then the short
recovery, the quality, and the record the report and the chosen point are made from."""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from torchslim.core.context import Context
from torchslim.core.recipe import Recipe, Step
from torchslim.core.technique import TECHNIQUES
from torchslim.io.artifact import saved_bytes
from torchslim.search.evaluate import CostMeter, Costs
from torchslim.search.space import SearchSpace
from torchslim.search.target import METRICS, Target

RECOVERY = ("finetune", "distill")


def apply_steps(model: nn.Module, steps: Sequence[Step], context: Context) -> nn.Module:
    """Run `steps` on `model` in order through their registered handlers (the model is changed)."""
    for step in steps:
        model = TECHNIQUES.handler_for(step.config)(model, step.config, targets=step.targets, context=context).model
    return model


def constraints(target: Target, quality: float, baseline_quality: float, costs: Costs, metric: str) -> list[float]:
    """Constraint values (<= 0 met): the quality budget, then one per bounded cost metric."""
    if metric == "cosine":
        first = (target.min_cosine if target.min_cosine is not None else 0.99) - quality
    else:
        first = (baseline_quality - quality) * 100.0 - target.max_drop
    return [first, *[getattr(costs, m) - bound for m, bound in target.bounds().items()]]


def violation(values: list[float], bounds: dict[str, float]) -> float:
    """How far from feasible: the quality term in points plus each cost term relative to its bound."""
    extra = [max(0.0, v) / b for v, b in zip(values[1:], bounds.values(), strict=True)]
    return max(0.0, values[0]) + 10.0 * sum(extra)


@dataclasses.dataclass
class TrialRunner:
    """Runs trials of one study in this process (the objective given to the worker loop)."""

    original: nn.Module
    space: SearchSpace
    target: Target
    meter: CostMeter
    context: Context
    quality: Callable[[nn.Module], float]
    baseline_quality: float
    metric: str
    last_model: nn.Module | None = None
    missed: dict[str, tuple[Costs, float, str]] = dataclasses.field(default_factory=dict)
    """Untrained recipes (JSON) whose cost missed a bound: their costs, probe quality and reason."""

    def __call__(self, trial: Any) -> list[float]:
        params = self.space.suggest(trial)
        recipe = self.space.recipe(params)
        record = self.run(params, recipe)
        trial.set_user_attr("record", record)
        for name, value in zip(["quality", *self.target.bounds()], record["constraints"], strict=True):
            trial.set_constraint(name, float(value))  # <= 0: met; the samplers prefer feasible regions
        return [record["quality"], record["costs"][self.target.primary_metric]]

    def run(self, params: dict[str, Any], recipe: Recipe) -> dict[str, Any]:
        # long: the trial's phases in order (prefix, probe and early stop, recovery, final measurement)
        """Apply `recipe` to a copy of the original and measure it; returns the trial's record."""
        started = time.monotonic()
        self.last_model = None
        untrained_recipe = self.space.recipe({**params, "steps": 0, "qat": False, "distill": False})
        key = json.dumps(untrained_recipe.to_dict(), sort_keys=True, default=str)
        if key in self.missed:  # the same model before training as a trial that missed: same costs
            costs, quality, why = self.missed[key]
            return self._record(params, recipe, costs, quality, why + " (as an earlier trial)", started, 0.0)
        steps = list(recipe.steps)
        cut = next((i for i, s in enumerate(steps) if s.technique in RECOVERY), None)
        prefix = steps if cut is None else steps[:cut]
        suffix = [] if cut is None else steps[cut:]
        model = apply_steps(copy.deepcopy(self.original), prefix, self.context)
        config = {"recipe": recipe.to_dict()}
        untrained = self.space.recipe({**params, "steps": 0}).steps[len(prefix) :]  # no training: cost only
        probe = apply_steps(copy.deepcopy(model), untrained, self.context) if suffix else model
        precise = "latency" in self.target.bounds() or self.target.primary_metric == "latency"
        costs = self.meter.measure(probe, config=config, precise=precise)
        cost_terms = constraints(self.target, 0.0, self.baseline_quality, costs, self.metric)[1:]
        recovery_seconds = 0.0
        stopped_early = None
        if any(v > 0 for v in cost_terms):
            names = [m for m, v in zip(self.target.bounds(), cost_terms, strict=True) if v > 0]
            stopped_early = "misses the " + ", ".join(names) + " bound before fine-tuning"
            quality = self.quality(probe)
            self.missed[key] = (costs, quality, stopped_early)
        elif suffix:
            t0 = time.monotonic()
            model = apply_steps(model, suffix, self.context)
            recovery_seconds = time.monotonic() - t0
            quality = self.quality(model)
            costs = dataclasses.replace(costs, **_size_of(self.meter, model, config))
            self.last_model = model
        else:
            quality = self.quality(probe)
            self.last_model = model
        return self._record(params, recipe, costs, quality, stopped_early, started, recovery_seconds)

    def _record(
        self,
        params: dict[str, Any],
        recipe: Recipe,
        costs: Costs,
        quality: float,
        stopped_early: str | None,
        started: float,
        recovery_seconds: float,
    ) -> dict[str, Any]:
        """The trial's record (what the report, the saver and the chosen point read)."""
        values = constraints(self.target, quality, self.baseline_quality, costs, self.metric)
        return {
            "params": params,
            "recipe": recipe.to_dict(),
            "stopped_early": stopped_early,
            "quality": quality,
            "drop_points": (self.baseline_quality - quality) * 100.0,
            "costs": costs.to_dict(),
            "constraints": values,
            "feasible": all(v <= 0 for v in values) and stopped_early is None,
            "violation": violation(values, self.target.bounds()),
            "seconds": time.monotonic() - started,
            "recovery_seconds": recovery_seconds,
            "steps": int(params.get("steps", 0)),
        }


def _size_of(meter: CostMeter, model: nn.Module, config: dict[str, Any]) -> dict[str, Any]:
    """Bytes after fine-tuning (masks and codes are fixed before it, so this is a check, not a guess)."""
    size_bytes = saved_bytes(model, config=config)
    return {"bytes": size_bytes, "size": size_bytes / meter.base_bytes}


def row_key(record: dict[str, Any], primary: str) -> tuple[int, float, float]:
    """Order of preference: feasible first; then the smallest primary cost (feasible) or the smallest
    violation (infeasible); then the higher quality."""
    if record.get("feasible"):
        return (0, float(record["costs"][primary]), -float(record["quality"]))
    return (1, float(record.get("violation", float("inf"))), -float(record.get("quality", 0.0)))


__all__ = ["METRICS", "TrialRunner", "apply_steps", "constraints", "row_key", "violation"]
