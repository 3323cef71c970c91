"""The study driver: trial and time budgets, a killed study that resumes, two workers sharing a
real PostgreSQL study (N trials in total, none run twice), and the best model saved after each trial."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

from torchslim.io import load
from torchslim.search.run import BestSaver
from torchslim.search.study import Budget, make_sampler, open_study, run_worker, storage_url

DIRECTIONS = ["maximize", "minimize"]


def _study(url: str, name: str = "s") -> optuna.Study:
    return open_study(url, name, directions=DIRECTIONS, sampler=make_sampler("random", seed=0))


def _objective(sleep: float = 0.0):
    def objective(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        time.sleep(sleep)
        return [x, 1 - x]

    return objective


def test_trial_budget_is_the_study_total(tmp_path):
    url = storage_url(None, tmp_path)
    assert url.startswith("sqlite:///") and url.endswith("study.db")
    assert run_worker(_study(url), _objective(), budget=Budget(trials=3), url=url) == 3
    assert run_worker(_study(url), _objective(), budget=Budget(trials=5), url=url) == 2  # a rerun continues
    assert len(_study(url).get_trials(states=(TrialState.COMPLETE,))) == 5


def test_time_budget_ends_within_ten_percent(tmp_path):
    url = storage_url(None, tmp_path)
    started = time.monotonic()
    budget = Budget(seconds=5.0, started=started)
    ran = run_worker(_study(url), _objective(sleep=0.5), budget=budget, url=url)
    elapsed = time.monotonic() - started
    assert ran >= 2
    assert elapsed <= 5.0 * 1.1


def test_a_failing_trial_is_recorded_and_the_search_goes_on(tmp_path):
    url = storage_url(None, tmp_path)

    def objective(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        if trial.number == 0:
            raise RuntimeError("this recipe cannot run")
        return [x, x]

    run_worker(_study(url), objective, budget=Budget(trials=2), url=url)
    trials = _study(url).trials
    assert trials[0].state == TrialState.FAIL and "cannot run" in trials[0].user_attrs["failed_because"]
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == 2


def _worker(url: str, name: str, total: int, sleep: float, marks: Path) -> multiprocessing.Process:
    """A worker process forked from this one (see search_worker.py)."""
    from search_worker import work

    proc = multiprocessing.get_context("fork").Process(target=work, args=(url, name, total, sleep, marks))
    proc.start()
    return proc


def test_a_killed_study_resumes(tmp_path):
    url = storage_url(None, tmp_path)
    marks = tmp_path / "marks"
    marks.mkdir()
    proc = _worker(url, "resume", 4, 1.0, marks)
    deadline = time.monotonic() + 60
    while len(list(marks.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # mid-trial: trial 1 has started and never finishes
    proc.join()
    study = _study(url, "resume")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.RUNNING]
    again = _worker(url, "resume", 4, 0.0, marks)
    again.join(timeout=120)
    assert again.exitcode == 0
    states = [t.state for t in _study(url, "resume").trials]
    assert states.count(TrialState.COMPLETE) == 4  # the killed trial's place is taken by a new one
    assert states[1] == TrialState.FAIL


def test_two_workers_share_a_postgresql_study(postgres_url, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    total = 8
    _study(postgres_url, "shared")  # created once, so the workers race on trials, not on the study
    workers = [_worker(postgres_url, "shared", total, 0.3, marks) for _ in range(2)]
    for proc in workers:
        proc.join(timeout=180)
        assert proc.exitcode == 0
    study = _study(postgres_url, "shared")
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == total
    ran_numbers = sorted(int(p.name) for p in marks.iterdir())  # one file per executed trial, created "x"
    assert ran_numbers == sorted(t.number for t in complete)
    owners = {p.read_text() for p in marks.iterdir()}
    assert len(owners) == 2  # both workers ran trials


class _Runner:
    last_model: torch.nn.Module | None = None


class _Progress:
    def update(self, study, best):
        self.best = best


def test_best_model_saved_after_every_trial_only_when_better(tmp_path):
    runner = _Runner()
    saver = BestSaver(tmp_path, runner, "size", _Progress())
    study = optuna.create_study(directions=DIRECTIONS)
    recipe = {"version": 1, "steps": [{"technique": "finetune", "config": {"train": {"epochs": 0}}}]}
    sequence = [
        ({"feasible": False, "violation": 3.0, "quality": 0.5, "costs": {"size": 0.5}}, 0.0),
        ({"feasible": True, "violation": 0.0, "quality": 0.8, "costs": {"size": 0.2}}, 1.0),
        ({"feasible": True, "violation": 0.0, "quality": 0.9, "costs": {"size": 0.3}}, 2.0),  # bigger: kept out
        ({"feasible": True, "violation": 0.0, "quality": 0.7, "costs": {"size": 0.1}}, 3.0),
    ]
    expected_numbers = [0, 1, 1, 3]
    for (record, fill), expected in zip(sequence, expected_numbers, strict=True):
        trial = study.ask()
        trial.set_user_attr("record", {**record, "recipe": recipe})
        study.tell(trial, [record["quality"], record["costs"]["size"]])
        model = torch.nn.Linear(2, 2)
        torch.nn.init.constant_(model.weight, fill)
        runner.last_model = model
        saver(study, study.trials[-1])
        saved = json.loads((tmp_path / "best.json").read_text())
        assert saved["number"] == expected
        assert float(load(tmp_path / "best", model=torch.nn.Linear(2, 2)).weight[0, 0]) == float(expected)
        assert runner.last_model is None
