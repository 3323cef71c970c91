"""The progress bar of the one training loop (rich), hidden when quiet or when stdout is no terminal."""

from __future__ import annotations

import sys
from types import TracebackType

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from torchslim.train.hooks import TrainState


def is_quiet(quiet: bool | None) -> bool:
    """`quiet`, or when None: whether stdout is not a terminal."""
    if quiet is not None:
        return bool(quiet)
    try:
        return not sys.stdout.isatty()
    except (AttributeError, ValueError):
        return True


class ProgressBar:
    """``LABEL epoch E/N  [bar]  step/total  time left  loss``; a context manager (LABEL: what trains)."""

    def __init__(self, state: TrainState, *, quiet: bool | None, label: str = "train") -> None:
        self.state = state
        self.label = label
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("loss {task.fields[loss]}"),
            disable=is_quiet(quiet),
        )
        self._task: TaskID | None = None

    def __enter__(self) -> ProgressBar:
        self._progress.__enter__()
        state = self.state  # read on entry: a resumed run starts where its checkpoint was
        self._task = self._progress.add_task(
            self._label(state.epoch), total=state.total_steps, completed=state.step, loss="-"
        )
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._progress.__exit__(kind, exc, tb)

    def _label(self, epoch: int) -> str:
        return f"{self.label} epoch {epoch + 1}/{self.state.config.epochs}"

    def epoch(self, epoch: int) -> None:
        """Show that epoch `epoch` (0-based) is running."""
        if self._task is not None:
            self._progress.update(self._task, description=self._label(epoch))

    def step(self, loss: float) -> None:
        """Advance by one step that had loss `loss`."""
        if self._task is not None:
            self._progress.update(self._task, advance=1, loss=f"{loss:.4f}")
