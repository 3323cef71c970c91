"""The epochs of one training run: data order, resume inside an epoch, steps, logs, checkpoints.

Per epoch: the RNG and the loader are seeded from ``(seed, epoch)``; a resumed epoch skips the
batches its checkpoint had used and restores the RNG state; each step runs
:func:`~torchslim.train.batch.train_step`, logs every ``log_every`` steps and checkpoints every
``checkpoint_every`` steps and every ``checkpoint_minutes`` of wall-clock time (a checkpoint due on
the last batch of an epoch is written after ``on_epoch_end``, as the start of the next epoch). The
run ends after ``epochs`` passes, at ``max_steps``, or when early stopping says so (see
:class:`~torchslim.train.meter.Meter`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn

from torchslim.core.errors import DataError
from torchslim.train.batch import LossFn, train_step
from torchslim.train.determinism import seed_epoch, set_rng_state
from torchslim.train.hooks import TrainHook, TrainState
from torchslim.train.meter import Meter
from torchslim.train.progress import ProgressBar


@dataclasses.dataclass
class Run:
    """Everything the epochs of one ``train`` call share."""

    loader: Iterable[Any]
    state: TrainState
    meter: Meter
    hooks: list[TrainHook]
    loss_fn: LossFn
    params: list[nn.Parameter]
    progress: ProgressBar
    snapshot: Callable[[bool], None] | None = None
    restore_rng: dict[str, torch.Tensor] | None = None
    steps_run: int = 0
    last_snapshot: float = dataclasses.field(default_factory=time.monotonic)

    def save(self) -> None:
        """Write a (not complete) checkpoint now and restart the checkpoint clock."""
        assert self.snapshot is not None
        self.snapshot(False)
        self.last_snapshot = time.monotonic()

    def checkpoint_due(self) -> bool:
        """A checkpoint is due by step count (``checkpoint_every``) or by the clock (``checkpoint_minutes``)."""
        config = self.state.config
        if self.snapshot is None:
            return False
        every, minutes = config.checkpoint_every, config.checkpoint_minutes
        by_steps = every is not None and self.state.step % every == 0
        by_clock = minutes is not None and time.monotonic() - self.last_snapshot >= 60.0 * minutes
        return by_steps or by_clock

    def unfinished(self) -> bool:
        state = self.state
        total = state.total_steps
        return (
            not self.meter.stopped_early and state.epoch < state.config.epochs and (total is None or state.step < total)
        )


def run_epochs(run: Run) -> int:
    """Train until the run is done; return the number of steps this call took."""
    state, meter = run.state, run.meter
    while run.unfinished():
        iterator = _start_epoch(run)
        finished, pending = _run_batches(run, iterator)
        if not finished:
            break
        if state.batch_in_epoch == 0:
            raise DataError(f"The training data yielded no batches in epoch {state.epoch}.")
        for hook in run.hooks:
            hook.on_epoch_end(state)
        state.epoch += 1
        state.batch_in_epoch = 0
        meter.end_epoch(state.config)
        if pending and run.snapshot is not None and run.unfinished():
            run.save()
    if meter.window_count:
        meter.log(state)
    return run.steps_run


def _start_epoch(run: Run) -> Iterator[Any]:
    """Seed the epoch, skip the batches a resumed epoch already used, restore the RNG state."""
    state = run.state
    seed_epoch(run.loader, state.seed, state.epoch)
    iterator = iter(run.loader)
    for skipped in range(state.batch_in_epoch):
        try:
            next(iterator)
        except StopIteration:
            raise DataError(
                f"Cannot resume: epoch {state.epoch} of the training data has only {skipped} batches, "
                f"the checkpoint had used {state.batch_in_epoch}."
            ) from None
    if run.restore_rng is not None and state.batch_in_epoch > 0:
        set_rng_state(run.restore_rng, state.device)
    run.restore_rng = None
    run.progress.epoch(state.epoch)
    return iterator


def _run_batches(run: Run, iterator: Iterator[Any]) -> tuple[bool, bool]:
    """Steps of one epoch. Returns (the pass over the data finished, a checkpoint is due at its end)."""
    state = run.state
    per_epoch, total = state.steps_per_epoch, state.total_steps
    pending = False
    while True:
        if per_epoch is not None and state.batch_in_epoch >= per_epoch:
            return True, pending
        if total is not None and state.step >= total:
            return False, pending
        try:
            batch = next(iterator)
        except StopIteration:
            return True, pending
        pending = _step(run, batch) or pending


def _step(run: Run, batch: Any) -> bool:
    """One step with its bookkeeping; returns whether a checkpoint is due at the end of the epoch."""
    state, meter = run.state, run.meter
    total = state.total_steps
    loss, lr = train_step(state, batch, run.hooks, run.loss_fn, run.params)
    state.batch_in_epoch += 1
    state.step += 1
    run.steps_run += 1
    state.last_loss = loss
    meter.add(loss, lr)
    if state.step % state.config.log_every == 0 or state.step == total:
        meter.log(state)
    for hook in run.hooks:
        hook.on_step_end(state)
    run.progress.step(loss)
    if not run.checkpoint_due():
        return False
    if state.steps_per_epoch is not None and state.batch_in_epoch == state.steps_per_epoch:
        return True  # write it after on_epoch_end, as the start of the next epoch
    if total is None or state.step < total:
        run.save()
    return False
