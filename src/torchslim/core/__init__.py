"""Core abstractions: configs, registry, targets, recipes, context and errors (no technique code)."""

from torchslim.core.config import TechniqueConfig, check_range
from torchslim.core.context import Context, DataSplits
from torchslim.core.errors import (
    ArtifactError,
    ConfigError,
    DataError,
    DataNotFoundError,
    ModelError,
    TargetError,
    TorchSlimError,
    UnknownNameError,
    UnsafeInputError,
)
from torchslim.core.recipe import Recipe, Step, apply_overrides
from torchslim.core.registry import Registry
from torchslim.core.targets import Targets
from torchslim.core.technique import TECHNIQUES, StepOutcome

__all__ = [
    "ArtifactError",
    "ConfigError",
    "Context",
    "DataError",
    "DataNotFoundError",
    "DataSplits",
    "ModelError",
    "Recipe",
    "Registry",
    "Step",
    "StepOutcome",
    "TECHNIQUES",
    "TargetError",
    "Targets",
    "TechniqueConfig",
    "TorchSlimError",
    "UnknownNameError",
    "UnsafeInputError",
    "apply_overrides",
    "check_range",
]
