"""A rich progress bar for the search: trials done, the best so far, time left."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from optuna.trial import TrialState

from torchslim.search.study import Budget
from torchslim.search.target import Target


def describe_best(best: dict[str, Any] | None, target: Target) -> str:
    """``best: 23.1x smaller, -0.40 pts (feasible)`` or ``best: none yet``."""
    if not best:
        return "best: none yet"
    costs = best["costs"]
    primary = target.primary_metric
    value = f"{1 / costs['size']:.1f}x smaller" if primary == "size" else f"{primary} {costs[primary]:.3f}x"
    state = "meets the target" if best.get("feasible") else "closest, target not met"
    return f"best: {value}, {-best['drop_points']:+.2f} pts ({state})"


class SearchProgress:
    """Context manager around a rich progress bar; `quiet` shows nothing."""

    def __init__(self, trials: int | None, budget: Budget, target: Target, *, quiet: bool) -> None:
        self.trials = trials
        self.budget = budget
        self.target = target
        self.quiet = quiet
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> SearchProgress:
        if not self.quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.bar = Progress(
                TextColumn("search"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}")
            )
            self.bar.start()
            self.task = self.bar.add_task(self._text(None), total=self.trials)
        return self

    def _text(self, best: dict[str, Any] | None) -> str:
        left = self.budget.left()
        clock = "" if left == float("inf") else f" | {max(left, 0) / 60:.1f} min left"
        return describe_best(best, self.target) + clock

    def update(self, study: Any, best: dict[str, Any] | None) -> None:
        if self.bar is None:
            return
        done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
        self.bar.update(self.task, completed=done, description=self._text(best))

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.bar is not None:
            self.bar.stop()
