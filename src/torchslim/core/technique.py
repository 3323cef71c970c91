"""The technique registry and the handler contract.

A handler is ``handler(model, config, *, targets, context) -> StepOutcome``. It may change `model`
in place or return a new module; it never mutates the config. Layers it had to skip are listed in
``StepOutcome.skipped`` with a reason, so the report can say what was not compressed and why.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from torch import nn

from torchslim.core.config import TechniqueConfig
from torchslim.core.context import Context
from torchslim.core.registry import Registry
from torchslim.core.targets import Targets


@dataclasses.dataclass
class StepOutcome:
    """What a step did: the resulting model, per-layer details, skipped layers and free-form facts."""

    model: nn.Module
    layers: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    info: dict[str, Any] = dataclasses.field(default_factory=dict)


class TechniqueHandler(Protocol):
    def __call__(self, model: nn.Module, config: Any, *, targets: Targets | None, context: Context) -> StepOutcome: ...


TECHNIQUES: Registry[TechniqueConfig, TechniqueHandler] = Registry("technique")
"""The registry of every technique; technique packages register into it on import."""
