"""The search end to end on a small trained CNN (digits): compress(target=...), the files it leaves,
a killed search that resumes, and the command line's errors."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time

import pytest
from search_toys import DigitsCNN  # this folder is on sys.path (conftest.py)

import torchslim as ts
from torchslim.core.recipe import Recipe
from torchslim.search import SearchOptions, search

FAST = {"finetune_steps": (0, 20), "quiet": True, "sensitivity_batches": 2}
GOAL = ts.Target(size=3, max_drop=3.0)


def test_compress_target_errors_name_the_parameter(cli, tmp_path):
    code, _, err = cli(["compress", "fmnist-cnn", "--data", "digits", "--out", str(tmp_path / "a")])
    assert code == 2 and "--recipe" in err and "--target" in err
    both = ["compress", "fmnist-cnn", "--data", "digits", "--recipe", "int8", "--target", "size=4x"]
    code, _, err = cli([*both, "--out", str(tmp_path / "b")])
    assert code == 2 and "exactly one" in err
    code, _, err = cli(["search", "fmnist-cnn", "--data", "digits", "--target", "sise=4x", "--trials", "1"])
    assert code == 2 and "sise" in err and "size" in err
    code, _, err = cli(["search", "fmnist-cnn", "--data", "digits", "--target", "size=4x"])
    assert code == 2 and "--trials" in err


@pytest.mark.slow
def test_compress_with_a_target_chooses_a_recipe_that_reruns(digits_cnn, tmp_path):
    model, splits = digits_cnn
    options = SearchOptions(trials=4, **FAST)
    result = ts.compress(model, splits, target=ts.Target(size=3, max_drop=3.0), search=options, run_dir=tmp_path)
    folder = tmp_path / "search"
    summary = json.loads((folder / "search.json").read_text())
    assert len(summary["trials"]) == 4 and summary["chosen"] is not None
    energy = summary["energy"]  # what the search itself used, labelled measured or estimated
    assert energy["joules"] > 0 and energy["label"].startswith("measured") == energy["measured"]
    assert "Energy of this search" in (folder / "search.md").read_text()
    for name in ("recipe.yaml", "search.md", "pareto-size.png", "best/torchslim.json", "study.db"):
        assert (folder / name).exists(), name
    rerun = Recipe.from_file(folder / "recipe.yaml")
    assert rerun.to_dict() == result.recipe.to_dict()  # what compress ran is what recipe.yaml says
    assert result.report.after["bytes"] < result.report.before["bytes"]
    space = json.loads((folder / "space.json").read_text())
    assert space["entropy_code"] and space["entropy_code_always"]  # size bounded: lossless coding always on


def test_a_latency_target_searches_no_bit_widths(digits_cnn, tmp_path):
    model, splits = digits_cnn
    search(
        model,
        splits,
        target=ts.Target(latency=0.95, max_drop=3.0),
        out_dir=tmp_path,
        options=SearchOptions(trials=1, **FAST),
    )
    space = json.loads((tmp_path / "space.json").read_text())
    assert space["bit_choices"] and all(c == [8] for c in space["bit_choices"].values())
    assert not space["entropy_code"] and set(space["level_types"]) <= {"uniform", "float"}


def _search_process(model, splits, out, trials):
    search(
        model, splits, target=ts.Target(size=3, max_drop=3.0), out_dir=out, options=SearchOptions(trials=trials, **FAST)
    )


@pytest.mark.slow
def test_a_killed_search_leaves_the_best_model_and_resumes(digits_cnn, tmp_path):
    model, splits = digits_cnn
    out = tmp_path / "search"
    proc = multiprocessing.get_context("fork").Process(target=_search_process, args=(model, splits, out, 6))
    proc.start()
    deadline = time.monotonic() + 300
    while not (out / "best.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    best = json.loads((out / "best.json").read_text())
    saved = ts.load(out / "best", model=DigitsCNN())  # the plan (pruned channels, codes) is replayed
    images = next(iter(splits.test))[0]
    assert saved(images).shape == (images.shape[0], 10) and best["recipe"]["steps"]
    sensitivity_written = (out / "sensitivity.json").stat().st_mtime
    result = search(
        model, splits, target=ts.Target(size=3, max_drop=3.0), out_dir=out, options=SearchOptions(trials=6, **FAST)
    )
    assert (out / "sensitivity.json").stat().st_mtime == sensitivity_written  # resumed, not restarted
    assert len(result.records) >= 6
    assert result.chosen is not None
