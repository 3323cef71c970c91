"""The optimizer and learning-rate schedule a :class:`~torchslim.train.TrainConfig` asks for, and the
number of steps the run plans (the horizon of the ``cosine`` and ``linear`` schedules)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from torchslim.core.errors import DataError
from torchslim.train.config import TrainConfig, schedule_factor


def make_optimizer(params: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """``adam``, ``adamw`` or ``sgd`` over `params` with the config's lr, momentum and weight decay."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, total: int | None, per_epoch: int | None
) -> torch.optim.lr_scheduler.LambdaLR:
    """A step-wise scheduler that multiplies the lr by :func:`schedule_factor` (a pure function of the step)."""
    schedule_factor(config, config.warmup_steps, total, per_epoch)  # fail early on a missing horizon

    def factor(step: int) -> float:
        return schedule_factor(config, step, total, per_epoch)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=factor)


def steps_per_epoch(loader: Any) -> int | None:
    """``len(loader)``, or None when the data has no length (a stream)."""
    try:
        return len(loader)
    except TypeError:
        return None


def planned_steps(config: TrainConfig, per_epoch: int | None) -> int | None:
    """Optimizer steps the run plans: ``epochs * per_epoch`` capped by ``max_steps``; None when unknown.

    Raises :class:`DataError` for data that is known to be empty while epochs are asked for.
    """
    if per_epoch == 0 and config.epochs > 0:
        raise DataError("The training data is empty (len() == 0).")
    if config.epochs == 0:
        return 0
    if per_epoch is not None:
        total = config.epochs * per_epoch
        return min(total, config.max_steps) if config.max_steps is not None else total
    return config.max_steps
