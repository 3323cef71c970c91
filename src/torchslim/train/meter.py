"""Running loss sums of the one training loop: the history entries, the final loss, early stopping.

A :class:`Meter` is checkpointed whole (its fields are plain numbers), so the history and the
early-stopping counters of a resumed run equal those of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses

from torchslim.train.config import TrainConfig
from torchslim.train.hooks import TrainState


@dataclasses.dataclass
class Meter:
    """Loss sums over the current log window and epoch, and the early-stopping counters.

    `best_epoch_loss` is the lowest epoch mean loss seen so far, `epochs_without_improvement` the
    number of epochs since it last improved by more than ``early_stop_min_delta``, `stopped_early`
    whether the run stopped for that reason.
    """

    window_sum: float = 0.0
    window_count: int = 0
    epoch_sum: float = 0.0
    epoch_count: int = 0
    last_epoch_mean: float | None = None
    last_lr: float | None = None
    best_epoch_loss: float | None = None
    epochs_without_improvement: int = 0
    stopped_early: bool = False

    def add(self, loss: float, lr: float) -> None:
        """Count one step's loss and the lr it used."""
        self.last_lr = lr
        self.window_sum += loss
        self.window_count += 1
        self.epoch_sum += loss
        self.epoch_count += 1

    def end_epoch(self, config: TrainConfig) -> None:
        """Close the epoch's sums; update the early-stopping counters when the config asks for it."""
        if self.epoch_count:
            self.last_epoch_mean = self.epoch_sum / self.epoch_count
        self.epoch_sum, self.epoch_count = 0.0, 0
        patience = config.early_stop_patience
        if patience is None or self.last_epoch_mean is None:
            return
        if self.best_epoch_loss is None or self.last_epoch_mean < self.best_epoch_loss - config.early_stop_min_delta:
            self.best_epoch_loss = self.last_epoch_mean
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1
            self.stopped_early = self.epochs_without_improvement >= patience

    def final(self) -> float | None:
        """Mean loss of the last pass (the partial one when it was cut short), None without steps."""
        return self.epoch_sum / self.epoch_count if self.epoch_count else self.last_epoch_mean

    def log(self, state: TrainState) -> None:
        """Append the window's mean loss and lr to ``state.history`` and start a new window."""
        if not self.window_count:
            return
        state.history.append(
            {
                "step": state.step,
                "epoch": state.epoch,
                "loss": self.window_sum / self.window_count,
                "lr": self.last_lr,
            }
        )
        self.window_sum, self.window_count = 0.0, 0
