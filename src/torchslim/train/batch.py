"""One training batch: split it into inputs and labels, run the model, take one optimizer step."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from torchslim.core.batches import call_model, logits_of, to_device
from torchslim.core.errors import DataError, TorchSlimError
from torchslim.train.hooks import TrainHook, TrainState

LossFn = Callable[[Any, torch.Tensor], torch.Tensor]
"""``loss_fn(outputs, labels) -> scalar``: the task loss of the loop."""


class TrainingDivergedError(TorchSlimError, FloatingPointError):
    """The training loss became NaN or infinite."""


def run_model(model: nn.Module, inputs: Any, device: torch.device | str = "cpu") -> Any:
    """Call `model` on one batch's inputs moved to `device` (see :func:`torchslim.core.batches.call_model`)."""
    return call_model(model, to_device(inputs, torch.device(device)))


def split_batch(batch: Any, device: torch.device) -> tuple[Any, torch.Tensor]:
    """``(inputs, labels)`` of one training batch, on `device`; anything else is a :class:`DataError`."""
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise DataError(
            f"Training batches must be (inputs, labels) pairs; got {type(batch).__name__}"
            + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
            + "."
        )
    inputs, labels = batch
    if not isinstance(labels, torch.Tensor):
        labels = torch.as_tensor(labels)
    return to_device(inputs, device), labels.to(device)


def default_loss(outputs: Any, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the logits: the task loss when a technique gives none."""
    return F.cross_entropy(logits_of(outputs), labels)


def train_step(
    state: TrainState, batch: Any, hooks: list[TrainHook], loss_fn: LossFn, params: list[nn.Parameter]
) -> tuple[float, float]:
    """One optimizer step; returns the loss value and the learning rate it used."""
    model, optimizer = state.model, state.optimizer
    inputs, labels = split_batch(batch, state.device)
    optimizer.zero_grad(set_to_none=True)
    outputs = run_model(model if state.parallel is None else state.parallel.module, inputs, state.device)
    loss = loss_fn(outputs, labels)
    for hook in hooks:
        extra = hook.extra_loss(state, (inputs, labels), outputs)
        if extra is not None:
            loss = loss + extra
    value = float(loss.detach())
    if state.parallel is not None:  # weighted for DDP's gradient mean; value: the global batch's mean loss
        loss, value = state.parallel.global_loss(loss, len(labels))
    if not math.isfinite(value):
        raise TrainingDivergedError(
            f"The training loss is {value} at step {state.step + 1} (epoch {state.epoch}); lower lr, set "
            "grad_clip or check the data."
        )
    loss.backward()
    for hook in hooks:
        hook.on_before_optimizer_step(state)
    if state.config.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(params, state.config.grad_clip)
    lr = state.lr
    optimizer.step()
    state.scheduler.step()
    return value, lr
