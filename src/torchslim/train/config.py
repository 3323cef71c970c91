"""`TrainConfig`: what the one training loop does, and the learning-rate schedule it follows.

The schedule is a pure function of the step (:func:`schedule_factor`), so resuming from a
checkpoint only needs the step number to put the learning rate back where it was.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from torchslim.core.config import TechniqueConfig
from torchslim.core.errors import ConfigError

Optimizer = Literal["adam", "adamw", "sgd"]
Schedule = Literal["constant", "cosine", "linear", "step"]
Distributed = Literal["auto", "on", "off"]

# Fields that change how a run is observed, not what it computes; a checkpoint written with other
# values of these can still be resumed.
OBSERVATION_FIELDS = ("checkpoint_every", "checkpoint_minutes", "log_every", "distributed")

_RANGES: dict[str, dict[str, Any]] = {
    "epochs": {"low": 0},
    "max_steps": {"low": 0},
    "lr": {"low": 0, "low_inclusive": False},
    "momentum": {"low": 0, "high": 1, "high_inclusive": False},
    "weight_decay": {"low": 0},
    "warmup_steps": {"low": 0},
    "grad_clip": {"low": 0, "low_inclusive": False},
    "checkpoint_every": {"low": 1},
    "checkpoint_minutes": {"low": 0, "low_inclusive": False},
    "log_every": {"low": 1},
    "step_size": {"low": 1},
    "gamma": {"low": 0, "high": 1, "low_inclusive": False},
    "early_stop_patience": {"low": 1},
    "early_stop_min_delta": {"low": 0},
}
"""Allowed range of each numeric field of :class:`TrainConfig` (None values are not checked)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig(TechniqueConfig):
    """How to train: epochs, optimizer, learning-rate schedule, clipping, checkpoints, logging.

    Attributes:
        epochs: full passes over the training data (0 trains nothing, hooks still run).
        max_steps: stop after this many optimizer steps in total, even mid-epoch; it also sets the
            horizon of the ``cosine``/``linear`` schedules when smaller than ``epochs`` passes.
        lr: peak learning rate.
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"``.
        momentum: SGD momentum in [0, 1); ignored by Adam/AdamW.
        weight_decay: L2 penalty (Adam, SGD) or decoupled decay (AdamW).
        schedule: learning-rate factor after warm-up: ``constant`` 1; ``linear`` 1 - p;
            ``cosine`` (1 + cos(pi p)) / 2, where p = (step - warmup) / (total - warmup) goes from
            0 to just below 1 over the run; ``step`` gamma ** ((step - warmup) // step_size).
        warmup_steps: linear warm-up; step s < warmup uses factor (s + 1) / (warmup + 1).
        step_size: steps between decays of the ``step`` schedule; None means one epoch.
        gamma: decay factor of the ``step`` schedule, in (0, 1].
        grad_clip: clip the global gradient L2 norm to this value; None does not clip.
        checkpoint_every: with a ``run_dir``, write a checkpoint every this many steps; None writes
            only the final one (marked complete) that ``train`` writes whenever it has a run_dir.
        checkpoint_minutes: with a ``run_dir``, also write a checkpoint once this many minutes have
            passed since the last one (so a long run killed late loses at most this much work);
            None turns the clock off.
        log_every: append a history entry (mean loss since the previous entry, lr) every this many
            steps, and at the last step.
        early_stop_patience: stop before ``epochs`` passes once the mean training loss of an epoch
            has not improved on the best one by more than ``early_stop_min_delta`` for this many
            epochs in a row; None (the default) never stops early.
        early_stop_min_delta: the improvement of the epoch mean loss that counts, >= 0.
        distributed: ``"auto"`` trains data-parallel (DistributedDataParallel, same global batch)
            when launched by torchrun or inside an initialised process group of several processes;
            ``"on"`` requires that; ``"off"`` trains each process alone (see
            :mod:`torchslim.train.distributed`). Not part of a checkpoint's identity: a run
            resumes with another number of processes.
    """

    summary: ClassVar[str] = "Settings of the one training loop."

    epochs: int = 1
    max_steps: int | None = None
    lr: float = 1e-3
    optimizer: Optimizer = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: Schedule = "constant"
    warmup_steps: int = 0
    step_size: int | None = None
    gamma: float = 0.1
    grad_clip: float | None = None
    checkpoint_every: int | None = None
    checkpoint_minutes: float | None = 10.0
    log_every: int = 50
    early_stop_patience: int | None = None
    early_stop_min_delta: float = 0.0
    distributed: Distributed = "auto"

    def validate(self) -> None:
        for field, kwargs in _RANGES.items():
            value = getattr(self, field)
            if value is None:
                continue
            if isinstance(value, float) and math.isinf(value):
                raise ConfigError(f"TrainConfig.{field}={value!r} must be finite.")
            self.check(field, value, **kwargs)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with `changes` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def identity(self) -> dict[str, Any]:
        """The fields that decide the trained weights (everything but checkpoint/log cadence)."""
        return {k: v for k, v in self.to_dict().items() if k not in OBSERVATION_FIELDS}


FLAT_TRAINING_KEYS = (
    "epochs",
    "lr",
    "optimizer",
    "max_steps",
    "weight_decay",
    "schedule",
    "warmup_steps",
    "momentum",
    "grad_clip",
)
"""The training keys that the ``finetune`` and ``distill`` configs held flat before they nested ``train:``."""


def renamed_training_keys() -> Mapping[str, str]:
    """``{"epochs": "train.epochs", ...}``: the ``renamed`` entries of a config that nests ``train:``."""
    return {key: f"train.{key}" for key in FLAT_TRAINING_KEYS}


def schedule_factor(config: TrainConfig, step: int, total_steps: int | None, steps_per_epoch: int | None) -> float:
    """Learning-rate multiplier for the optimizer step with index `step` (0-based).

    `total_steps` is the planned number of steps (needed by ``cosine`` and ``linear``),
    `steps_per_epoch` the default ``step_size`` of the ``step`` schedule.
    """
    warmup = config.warmup_steps
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if config.schedule == "constant":
        return 1.0
    if config.schedule == "step":
        size = config.step_size if config.step_size is not None else steps_per_epoch
        if not size:
            raise ConfigError(
                "TrainConfig.step_size must be set for schedule='step' when the training data has no len()."
            )
        return config.gamma ** ((step - warmup) // size)
    if total_steps is None:
        raise ConfigError(
            f"TrainConfig.schedule={config.schedule!r} needs the number of steps, but the training data has "
            "no len(); set max_steps or use schedule='constant' or 'step'."
        )
    progress = (step - warmup) / max(1, total_steps - warmup)
    progress = min(max(progress, 0.0), 1.0)
    if config.schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))
