"""The optuna study: storage (SQLite by default, PostgreSQL to share), samplers, and the worker loop
that honours trial and time budgets and leaves a study that resumes.

Trial budget: ``trials`` is the study's total, over every run and worker. A worker asks optuna for a
trial, and the storage numbers trials uniquely, so a trial numbered past the budget (plus the trials
that failed) is closed unrun: two workers sharing one PostgreSQL study complete exactly the budget
and never run one trial twice. Time budget: a trial starts only when the time left covers the
longest trial seen so far. A trial whose worker died (``kill -9``, a lost machine) stays RUNNING in
the storage; the next worker on the same host marks it FAIL when its process is gone
(:func:`fail_dead_trials`), so a resumed study runs it again as a new trial.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, cast

import optuna
from optuna.trial import FrozenTrial, TrialState

from torchslim.core.errors import ConfigError

SAMPLERS = ("tpe", "nsga2", "random")
WORKER_ATTR = "worker"


def storage_url(storage: str | None, out_dir: str | Path) -> str:
    """`storage` as given (``sqlite:///...``, ``postgresql://...``), else a SQLite file in `out_dir`."""
    if storage:
        if "://" not in storage:
            raise ConfigError(f"--storage {storage!r} must be a database URL (sqlite:///path, postgresql://...).")
        return driver_url(storage)
    path = Path(out_dir).resolve() / "study.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def driver_url(url: str) -> str:
    """`url` with the PostgreSQL driver that is installed: SQLAlchemy 2 reads a bare
    ``postgresql://`` as psycopg 3, and psycopg2 is the one torchslim's extra installs."""
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None:
        return "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url


def make_sampler(name: str, *, seed: int) -> Any:
    """TPE (the default: good with tens of trials), NSGA-II (needs hundreds) or random; TPE and
    NSGA-II read the constraints each trial sets (``Trial.set_constraint``; <= 0 means feasible)."""
    if name == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed,
            n_startup_trials=6,
            multivariate=True,
        )
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=16)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ConfigError(f"sampler={name!r} must be one of {list(SAMPLERS)}.")


def open_study(url: str, name: str, *, directions: Sequence[str], sampler: Any, quiet: bool = True) -> optuna.Study:
    """Create the study or load it (resume); a study of the same name with other objectives is an error."""
    if quiet:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=driver_url(url),
        study_name=name,
        directions=[cast(Literal["minimize", "maximize"], d) for d in directions],
        sampler=sampler,
        load_if_exists=True,
    )
    if [d.name.lower() for d in study.directions] != [d.lower() for d in directions]:
        raise ConfigError(
            f"The study {name!r} in {url} optimises {[d.name.lower() for d in study.directions]}, "
            f"not {list(directions)}; use another --out or --study-name."
        )
    return study


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_dead_trials(study: optuna.Study, url: str) -> list[int]:
    """Mark FAIL the RUNNING trials of `study` (stored at `url`) started by a process of this host
    that no longer exists. optuna's public API closes only the trials this process asked for, so
    this goes through the storage."""
    host = socket.gethostname()
    storage = None
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = str(trial.user_attrs.get(WORKER_ATTR, ""))
        owner_host, _, pid = owner.rpartition(":")
        if owner_host != host or not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        storage = storage or optuna.storages.RDBStorage(driver_url(url))
        trial_id = trial._trial_id  # noqa: SLF001 - FrozenTrial has no public id
        storage.set_trial_user_attr(trial_id, "failed_because", "its worker process died")
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
        failed.append(trial.number)
    return failed


@dataclasses.dataclass
class Budget:
    """Trials (the study's total) and seconds (this run's, from `started`)."""

    trials: int | None = None
    seconds: float | None = None
    started: float = dataclasses.field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.trials is not None and (isinstance(self.trials, bool) or self.trials < 1):
            raise ConfigError(f"trials={self.trials!r} must be a positive integer.")
        if self.seconds is not None and not self.seconds > 0:
            raise ConfigError(f"minutes must be > 0, got {self.seconds / 60:g}.")

    def left(self) -> float:
        return float("inf") if self.seconds is None else self.seconds - (time.monotonic() - self.started)


Objective = Callable[[optuna.Trial], Sequence[float]]
TrialDone = Callable[[optuna.Study, FrozenTrial], None]


def _trial_limit(study: optuna.Study, budget: Budget) -> float:
    if budget.trials is None:
        return float("inf")
    failed = len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
    return budget.trials + failed


def _finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def run_worker(
    study: optuna.Study,
    objective: Objective,
    *,
    budget: Budget,
    on_trial_done: TrialDone | None = None,
    url: str | None = None,
    deadline_margin: float = 1.1,
) -> int:
    """Ask, run and tell trials until a budget says stop; returns how many this worker ran.

    A Ctrl-C closes the running trial as FAIL (so the study resumes cleanly) and ends the loop.
    """
    ran = 0
    longest = 0.0
    if url is not None:
        fail_dead_trials(study, url)
    while True:
        if budget.trials is not None and _finished(study) >= budget.trials:
            break
        if longest and budget.left() < deadline_margin * longest:
            break
        if budget.left() <= 0:
            break
        trial = study.ask()
        if trial.number >= _trial_limit(study, budget):
            trial.set_user_attr("skipped", "the study's trial budget was reached by other workers")
            study.tell(trial, state=TrialState.FAIL)
            break
        trial.set_user_attr(WORKER_ATTR, worker_id())
        started = time.monotonic()
        try:
            values = objective(trial)
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
        except KeyboardInterrupt:
            trial.set_user_attr("failed_because", "interrupted")
            study.tell(trial, state=TrialState.FAIL)
            raise
        except Exception as exc:  # noqa: BLE001 - one failing recipe must not end the search; it is recorded
            trial.set_user_attr("failed_because", f"{type(exc).__name__}: {str(exc)[:300]}")
            study.tell(trial, state=TrialState.FAIL)
        else:
            study.tell(trial, list(values))
        ran += 1
        longest = max(longest, time.monotonic() - started)
        if on_trial_done is not None:
            finished = [t for t in study.get_trials(deepcopy=False) if t.number == trial.number]
            on_trial_done(study, finished[0])
    return ran
