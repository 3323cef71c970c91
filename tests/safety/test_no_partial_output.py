"""No partial output: exports renamed into place only after parity, leftovers of killed saves cleaned,
the overwrite of an artifact is a swap that never loses the previous one, seeded training reproduces."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from unittest import mock

import pytest
import torch
from safetensors.torch import save_file
from tests.cli_helpers import run_cli
from tests.safety.conftest import assert_clean_failure, snapshot

from torchslim.io import load, save
from torchslim.io.outputs import clean_leftovers, restore_swap
from torchslim.models import build_model


def _dead_pid() -> int:
    """The pid of a process that has ended."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_export_failing_parity_leaves_no_file(tmp_path, capsys):
    model = build_model("lenet-300-100", pretrained=False, seed=0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["fc1.bias"][0] = float("nan")
    weights = tmp_path / "nan.safetensors"
    save_file(state, str(weights))
    before = snapshot(tmp_path)
    onnx = tmp_path / "m.onnx"
    code, _, err = run_cli(["export", "lenet-300-100", "--weights", str(weights), "--onnx", str(onnx)], capsys)
    assert_clean_failure(code, err, "fc1.bias")  # refused on load: NaN
    code, _, err = run_cli(
        ["export", "lenet-300-100", "--weights", str(weights), "--onnx", str(onnx), "--allow-nonfinite"], capsys
    )
    assert_clean_failure(code, err, "does not match")  # exported, parity failed: nothing renamed into place
    assert snapshot(tmp_path) == before


def test_export_writes_only_the_file(tmp_path, capsys):
    code, _, err = run_cli(["export", "lenet-300-100", "--onnx", str(tmp_path / "m.onnx")], capsys)
    assert code == 0, err
    assert snapshot(tmp_path) == {"m.onnx"}


def test_leftovers_of_killed_saves_are_cleaned(tmp_path):
    dead = _dead_pid()
    target = tmp_path / "a"
    leftovers = [
        tmp_path / f".a.stage-{dead}-abcd1234",
        tmp_path / f".a.tmp-{dead}-abcd1234.tmp",
        tmp_path / ".a.k2j4_x9q",  # an older pid-less staging folder
        tmp_path / ".a.k2j4_x9q.tmp",
    ]
    leftovers[0].mkdir()
    (leftovers[0] / "model.safetensors").write_bytes(b"half")
    for path in leftovers[1:]:
        path.write_bytes(b"half") if path.suffix == ".tmp" else path.mkdir()
    alive = tmp_path / f".a.stage-{os.getpid()}-zzzz0000"  # a save in progress in this process
    other = tmp_path / ".b.stage-1-abcd1234"  # another target's
    alive.mkdir()
    other.mkdir()
    save(torch.nn.Linear(2, 2), target)
    assert snapshot(tmp_path) - {p for p in snapshot(tmp_path) if p.startswith("a/")} == {
        "a",
        alive.name,
        other.name,
    }


def test_interrupted_swap_is_restored_by_the_next_run(tmp_path):
    target = tmp_path / "a"
    first = torch.nn.Linear(2, 2)
    save(first, target)
    backup = tmp_path / f".a.old-{_dead_pid()}"
    os.replace(target, backup)  # a kill between the two renames of a swap
    assert restore_swap(target) == target
    assert torch.equal(load(target, model=torch.nn.Linear(2, 2)).weight, first.weight)
    assert snapshot(tmp_path) == snapshot(tmp_path) & {"a", *(f"a/{n}" for n in os.listdir(target))}
    os.replace(target, backup)
    clean_leftovers(target)  # what every save does first
    assert target.is_dir() and not backup.exists()


def test_failure_between_renames_puts_the_old_artifact_back(tmp_path):
    target = tmp_path / "a"
    first = torch.nn.Linear(2, 2)
    save(first, target)
    from torchslim.core.errors import OutputError

    real = os.replace
    moved_aside = []

    def flaky(src, dst):
        if ".stage-" in Path(src).name:  # the new artifact's rename into place, after the old one moved aside
            moved_aside.append(not Path(dst).exists())
            raise OSError(28, "No space left on device", str(dst))
        return real(src, dst)

    with mock.patch("torchslim.io.artifact.os.replace", flaky), pytest.raises(OutputError):
        save(torch.nn.Linear(2, 2), target)
    assert moved_aside == [True]
    assert torch.equal(load(target, model=torch.nn.Linear(2, 2)).weight, first.weight)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def _train(out: Path, capsys, *extra: str) -> tuple[int, str]:
    code, _, err = run_cli(
        [
            "train",
            "lenet-300-100",
            "--data",
            "fashion-mnist",
            "--train-samples",
            "256",
            "--eval-samples",
            "64",
            "--train-batch-size",
            "64",
            "--seed",
            "0",
            "--threads",
            "1",
            "--out",
            str(out),
            "--quiet",
            *extra,
        ],
        capsys,
    )
    return code, err


def test_two_seed_0_train_runs_are_byte_identical(tmp_path, capsys):
    for name in ("a", "b"):
        code, err = _train(tmp_path / name, capsys)
        assert code == 0, err
    weights = [(tmp_path / n / "model.safetensors").read_bytes() for n in ("a", "b")]
    assert weights[0] == weights[1]
    # the checkpoints of a finished run are gone; nothing else was left beside the artifacts
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_train_resumes_from_its_checkpoints(tmp_path, capsys):
    """A run whose artifact was never written (killed after its last checkpoint) finishes from it."""
    code, err = _train(tmp_path / "ref", capsys)
    assert code == 0, err
    with mock.patch("torchslim.io.save", side_effect=KeyboardInterrupt):
        code, err = _train(tmp_path / "out", capsys, "--checkpoint-every", "1")
    assert code == 130 and not (tmp_path / "out").exists()
    assert (tmp_path / ".out.run").is_dir()
    import torchslim.train

    results = []
    real_train = torchslim.train.train

    def recording(*args, **kwargs):
        results.append(real_train(*args, **kwargs))
        return results[-1]

    with mock.patch("torchslim.train.train", recording):
        code, err = _train(tmp_path / "out", capsys, "--checkpoint-every", "1")
    assert results[0].resumed_from_step == results[0].steps and results[0].steps_run == 0
    assert code == 0, err
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == (
        tmp_path / "ref" / "model.safetensors"
    ).read_bytes()
    assert not (tmp_path / ".out.run").exists()


def test_atomic_write_cleans_temporary_files_of_killed_writers(tmp_path):
    from torchslim.io import write_json

    dead = tmp_path / f".f.json.tmp-{_dead_pid()}-abcd1234.tmp"
    live = tmp_path / f".f.json.tmp-{os.getpid()}-abcd1234.tmp"
    dead.write_text("{half")
    live.write_text("{half")
    write_json(tmp_path / "f.json", {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["f.json", live.name])


def test_os_error_while_saving_is_a_typed_error(tmp_path):
    from torchslim.core.errors import OutputError

    with (
        mock.patch("torchslim.io.artifact.write_safetensors", side_effect=OSError(28, "No space left", "x")),
        pytest.raises(OutputError, match="No space left") as info,
    ):
        save(torch.nn.Linear(2, 2), tmp_path / "a")
    assert isinstance(info.value.__cause__, OSError)
    assert list(tmp_path.iterdir()) == []
