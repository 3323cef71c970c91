"""The kill suite: SIGKILL `torchslim train` and `torchslim compress` at random points, then rerun.

After every kill the output holds nothing or a complete artifact; the rerun of the same command
resumes from the last checkpoint and ends with the same weight bytes as an uninterrupted run; no
staging folder, temporary file or checkpoint folder is left beside the artifact. Run with
``pytest -m slow tests/safety/test_kills.py -s`` (it prints the counts)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

KILLS = 12  # per command

TRAIN = [
    "train", "lenet-300-100", "--data", "fashion-mnist", "--train-samples", "4096", "--eval-samples", "64",
    "--epochs", "3", "--train-batch-size", "16", "--checkpoint-every", "16", "--seed", "0", "--threads", "1", "--quiet",
]  # fmt: skip
RECIPE = (
    "version: 1\nsteps:\n  - technique: finetune\n    config: {train: {epochs: 3, lr: 0.001, checkpoint_every: 16}}\n"
)


def _compress(recipe: Path) -> list[str]:
    return [
        "compress", "lenet-300-100", "--data", "fashion-mnist", "--recipe", str(recipe), "--train-samples", "4096",
        "--eval-samples", "64", "--train-batch-size", "16", "--seed", "0", "--threads", "1", "--quiet",
    ]  # fmt: skip


def _run(
    args: list[str], out: Path, *, kill_after: float | None = None, after_checkpoint: bool = False
) -> tuple[int | None, float]:
    """Run the command; with `kill_after`, SIGKILL it that many seconds after its start (or, with
    `after_checkpoint`, after its first training checkpoint appeared). Returns (exit code or None
    when killed, seconds)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "torchslim", *args, "--out", str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    if kill_after is None:
        _, err = child.communicate(timeout=600)
        assert child.returncode == 0, err.decode()
        return 0, time.perf_counter() - start
    run_dir = out.parent / f".{out.name}.run"
    while after_checkpoint and child.poll() is None and not any(run_dir.rglob("latest.json")):
        time.sleep(0.01)
    try:
        child.wait(timeout=kill_after)
        return child.returncode, time.perf_counter() - start  # finished before the kill
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGKILL)
        child.wait()
        return None, time.perf_counter() - start


def _complete_or_absent(out: Path) -> str:
    if not out.exists():
        return "absent"
    from torchslim.io import load

    load(out)  # a complete artifact loads
    return "complete"


@pytest.mark.slow
@pytest.mark.parametrize("command", ["train", "compress"])
def test_kill_and_rerun(command, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    args = TRAIN if command == "train" else _compress(recipe)
    _, seconds = _run(args, tmp_path / "ref")
    reference = (tmp_path / "ref" / "model.safetensors").read_bytes()
    rng = random.Random(16)
    counts = {"kills": 0, "finished_before_kill": 0, "resumed": 0, "identical": 0, "absent": 0, "complete": 0}
    for i in range(KILLS):
        out = tmp_path / f"k{i}"
        during_training = i % 2 == 0  # half at a random point of the run, half inside training
        delay = rng.uniform(0.0, 2.0) if during_training else rng.uniform(0.2, 1.0) * seconds
        code, _ = _run(args, out, kill_after=delay, after_checkpoint=during_training)
        if code is not None:
            counts["finished_before_kill"] += 1
        else:
            counts["kills"] += 1
        counts[_complete_or_absent(out)] += 1
        run_dir = tmp_path / f".k{i}.run"
        had_checkpoint = any(run_dir.rglob("latest.json")) if run_dir.exists() else False
        _run(args, out)
        counts["resumed"] += had_checkpoint
        same = (out / "model.safetensors").read_bytes() == reference
        counts["identical"] += same
        assert same, f"kill {i}: the rerun ended with other weights"
        leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(f".k{i}."))
        assert leftovers == [], leftovers
    print(f"\n{command}: reference run {seconds:.1f} s; {counts}")
    assert counts["identical"] == KILLS
    assert counts["kills"] >= KILLS // 2 and counts["resumed"] >= KILLS // 3
