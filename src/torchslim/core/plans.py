"""Replayable plans: the structural changes a model went through, as JSON, and how to redo them.

A technique that changes a model's structure (removes channels, folds BatchNorm, drops layers,
replaces layers by quantized ones) appends one JSON entry ``{"kind": ..., ...}`` to the model's plan
with :func:`append_plan_entry`, and registers, once, a replay for that kind with
:func:`register_plan_replay`. Loading an artifact rebuilds the original architecture and calls
:func:`replay_plan`, which redoes every entry in order, so the saved weights fit.

The registry lives here, in ``core``, so every technique registers itself without importing ``io``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from torch import nn

from torchslim.core.errors import ArtifactError, UnknownNameError
from torchslim.core.registry import Registry

PLAN_ATTRIBUTE = "torchslim_plan"
"""The plain attribute of a model that holds its plan (a list of JSON entries)."""

PlanReplay = Callable[[nn.Module, dict[str, Any]], nn.Module]

PLAN_REPLAYS: Registry[None, PlanReplay] = Registry("plan replay")
"""Plan-entry kind -> ``replay(model, entry) -> model``."""


def register_plan_replay(kind: str) -> Callable[[PlanReplay], PlanReplay]:
    """Decorator: register `fn` as the replay of plan entries of `kind` (idempotent)."""

    def deco(fn: PlanReplay) -> PlanReplay:
        if kind not in PLAN_REPLAYS:
            PLAN_REPLAYS.register(kind, None, fn)
        return fn

    return deco


def model_plan(model: nn.Module) -> list[dict[str, Any]]:
    """A copy of the plan recorded on `model` (empty when none)."""
    plan = getattr(model, PLAN_ATTRIBUTE, None)
    return copy.deepcopy(list(plan)) if plan else []


def set_model_plan(model: nn.Module, plan: list[dict[str, Any]]) -> None:
    """Record `plan` on `model`, replacing what was there."""
    setattr(model, PLAN_ATTRIBUTE, [dict(entry) for entry in plan])


def append_plan_entry(model: nn.Module, entry: dict[str, Any]) -> None:
    """Append one JSON entry (it must have a ``kind``) to the plan recorded on `model`."""
    if not isinstance(entry.get("kind"), str):
        raise ValueError(f"a plan entry needs a string 'kind', got {entry!r}")
    plan = list(getattr(model, PLAN_ATTRIBUTE, None) or [])
    plan.append(entry)
    setattr(model, PLAN_ATTRIBUTE, plan)


def replay_plan(model: nn.Module, plan: list[dict[str, Any]], *, source: str = "plan") -> nn.Module:
    """Redo every entry of `plan` on `model` in order; record the plan on the result.

    An entry of an unknown kind, or one that is not a mapping, raises :class:`ArtifactError`
    naming its index and `source`.
    """
    for i, entry in enumerate(plan):
        if not isinstance(entry, dict):
            raise ArtifactError(f"{source}: plan entry {i} must be a mapping, got {type(entry).__name__}.")
        try:
            replay = PLAN_REPLAYS.entry(str(entry.get("kind"))).handler
        except UnknownNameError as exc:
            raise ArtifactError(f"{source}: plan entry {i}: {exc}") from None
        model = replay(model, entry)
    set_model_plan(model, plan)
    return model
