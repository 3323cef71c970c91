"""`TrainHook` and `TrainState`: how training-time techniques plug into the one training loop.

Per call of :func:`torchslim.train.train`, hooks are called in list order:

1. ``on_train_start(state)`` once, on a fresh run and on a resumed one alike; a checkpoint, if any,
   is restored *after* it (model, optimizer, schedule and every hook's ``load_state_dict``), so
   ``state.resumed_from_step`` says whether the hook's own state is about to be replaced.
   Structural changes that add parameters must happen before ``train`` is called (the optimizer is
   built first); adding buffers or parametrizations here is fine.
2. per step: forward, task loss, ``extra_loss(state, batch, outputs)`` (summed into the loss),
   backward, ``on_before_optimizer_step(state)`` (e.g. mask gradients), gradient clipping,
   optimizer and schedule step, then ``on_step_end(state)`` (``state.step`` already counts it).
3. ``on_epoch_end(state)`` after each full pass (not after a pass cut short by ``max_steps``).
4. ``on_train_end(state)`` once, also when a rerun finds training already complete.

``state_dict()`` must return plain JSON values (dict, list, str, int, float, bool, None) and
tensors, nested freely; checkpoints store the tensors as safetensors and the rest as JSON.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from torchslim.train.config import TrainConfig
from torchslim.train.distributed import DataParallel


@dataclasses.dataclass
class TrainState:
    """What the loop knows at any moment; hooks read it and may mutate the model through it.

    `step` counts completed optimizer steps, `epoch` is the 0-based index of the pass in
    progress (equal to the number of completed passes), `batch_in_epoch` the batches of that pass
    already used. `total_steps` is None when the data has no len() and no max_steps was given.
    `parallel` is set in a data-parallel run (:mod:`torchslim.train.distributed`): counters then
    count global batches, and `model` is the unwrapped model (hooks never see the DDP wrapper).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    config: TrainConfig
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    total_steps: int | None = None
    steps_per_epoch: int | None = None
    last_loss: float | None = None
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    resumed_from_step: int | None = None
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))
    seed: int = 0
    parallel: DataParallel | None = None

    @property
    def lr(self) -> float:
        """Learning rate of the first parameter group (the one the next step will use)."""
        return float(self.optimizer.param_groups[0]["lr"])


class TrainHook:
    """Base class of training-time hooks; every method is a no-op, override what you need."""

    def on_train_start(self, state: TrainState) -> None:
        """Called once before the first step of this call (fresh or resumed)."""

    def extra_loss(self, state: TrainState, batch: Any, outputs: Any) -> torch.Tensor | None:
        """Return a scalar added to the task loss (distillation, regularisers), or None.

        `batch` is ``(inputs, labels)`` already on the training device; `outputs` is what the model
        returned (a tensor or an object with ``.logits``; see :func:`torchslim.train.logits_of`).
        """
        return None

    def on_before_optimizer_step(self, state: TrainState) -> None:
        """Called after backward, before gradient clipping and the optimizer step."""

    def on_step_end(self, state: TrainState) -> None:
        """Called after the optimizer step; ``state.step`` already includes it."""

    def on_epoch_end(self, state: TrainState) -> None:
        """Called after a full pass over the data, before ``state.epoch`` advances."""

    def on_train_end(self, state: TrainState) -> None:
        """Called once at the end of the call, after the final checkpoint was written."""

    def state_dict(self) -> dict[str, Any]:
        """Hook state to checkpoint: JSON values and tensors only."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (tensors come back on the CPU)."""


def hooks_from_model(model: nn.Module) -> list[TrainHook]:
    """Training-time hooks a model contributes, in module order, without duplicates.

    Any submodule may define ``torchslim_train_hooks(self) -> Iterable[TrainHook]`` (for example a
    masked or fake-quantized layer that must keep its masks during later fine-tuning); ``train``
    adds these after the hooks it was given unless ``include_model_hooks=False``.
    """
    found: list[TrainHook] = []
    seen: set[int] = set()
    for module in model.modules():
        contribute = getattr(module, "torchslim_train_hooks", None)
        if not callable(contribute):
            continue
        hooks: Iterable[TrainHook] = contribute() or ()
        for hook in hooks:
            if id(hook) not in seen:
                seen.add(id(hook))
                found.append(hook)
    return found
