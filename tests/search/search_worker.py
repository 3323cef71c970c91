"""A worker of a shared study, for the tests: ``work(url, study, total, sleep, marks)`` runs in a
forked process (the parent's imports are reused, so a worker starts in milliseconds on a loaded
machine); ``python search_worker.py URL STUDY N SLEEP MARKS`` runs one by hand.

Each trial it runs creates ``MARKS/<trial number>`` exclusively (a second run of the same trial
would fail loudly), writes its pid there and sleeps `sleep` seconds; the budget is `total` trials
in the whole study.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from torchslim.search.study import Budget, make_sampler, open_study, run_worker, storage_url


def work(url: str, name: str, total: int, sleep: float, marks: Path) -> int:
    url = storage_url(url, marks)
    study = open_study(url, name, directions=["maximize", "minimize"], sampler=make_sampler("random", seed=os.getpid()))

    def objective(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        with open(marks / str(trial.number), "x") as f:  # "x": fails if this trial ran before
            f.write(str(os.getpid()))
        time.sleep(sleep)
        return [x, 1.0 - x]

    return run_worker(study, objective, budget=Budget(trials=total), url=url)


if __name__ == "__main__":
    print(work(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), Path(sys.argv[5])))
