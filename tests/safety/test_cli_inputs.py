"""Bad command lines: every one ends in one `error:` line naming the culprit, exit 2, nothing written.

With ``--debug`` the same command raises the exact typed error (asserted by class)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.cli_helpers import run_cli
from tests.safety.conftest import assert_clean_failure, snapshot

from torchslim.cli.main import main
from torchslim.core.errors import ConfigError, DataError, OutputError, UnknownNameError, UsageError

M = "lenet-300-100"
D = ["--data", "fashion-mnist"]

# (argv with OUT standing for an output path under tmp_path, culprit named in the message)
USAGE = [
    (["analyze", M, "--train-samples", "0"], "--train-samples"),
    (["analyze", M, "--eval-samples", "-1"], "--eval-samples"),
    (["analyze", M, "--threads", "0"], "--threads"),
    (["analyze", M, "--threads", "many"], "--threads"),
    (["analyze", M, "--latency-batch", "0"], "--latency-batch"),
    (["analyze", M, "--repeats", "0"], "--repeats"),
    (["analyze", M, "--num-classes", "0"], "--num-classes"),
    (["analyze", M, "--bogus"], "--bogus"),
    (["analyze"], "MODEL"),
    (["frobnicate"], "frobnicate"),
    (["--no-such-global"], "--no-such-global"),
    (["train", M, *D], "--out"),
    (["train", M, "--out", "OUT"], "--data"),
    (["train", M, *D, "--out", "OUT", "--epochs", "-1"], "--epochs"),
    (["train", M, *D, "--out", "OUT", "--lr", "fast"], "--lr"),
    (["train", M, *D, "--out", "OUT", "--seed", "1.5"], "--seed"),
    (["train", M, *D, "--out", "OUT", "--checkpoint-every", "0"], "--checkpoint-every"),
    (["train", M, *D, "--out", "OUT", "--train-batch-size", "0"], "--train-batch-size"),
    (["train", M, *D, "--out", "OUT", "--train-samples", "0"], "--train-samples"),
    (["train", M, "--out", "OUT", "--data"], "--data"),
    (["compress", M, *D, "--out", "OUT"], "--recipe"),
    (["compress", M, "--recipe", "finetune", "--out", "OUT"], "--data"),
    (["compress", M, *D, "--recipe", "finetune", "--out", "OUT", "--train-batch-size", "0"], "--train-batch-size"),
    (["compress", M, *D, "--recipe", "finetune", "--out", "OUT", "--threads", "-3"], "--threads"),
    (["distill", M, *D, "--out", "OUT"], "--student"),
    (["distill", M, *D, "--student", "width:0.5", "--out", "OUT", "--max-steps", "0"], "--max-steps"),
    (["distill", M, *D, "--student", "width:0.5", "--out", "OUT", "--epochs", "-2"], "--epochs"),
    (["distill", M, *D, "--student", "width:0.5", "--out", "OUT", "--temperature", "hot"], "--temperature"),
    (["export", M], "--onnx"),
    (["export", M, "--onnx", "OUT", "--opset", "5"], "--opset"),
    (["export", M, "--onnx", "OUT", "--parity-batch", "0"], "--parity-batch"),
    (["report"], "DIRECTORY"),
    (["list", "--bogus"], "--bogus"),
    (["list", "extra"], "extra"),
    (["demo", "--out", "OUT", "--epochs", "0"], "--epochs"),
    (["demo", "--out", "OUT", "--distill-epochs", "-1"], "--distill-epochs"),
]

# typed errors raised by a command before any work: (argv, exact class, culprit)
PRE_WORK = [
    (["analyze", "lenet-300"], UnknownNameError, "lenet-300"),
    (["analyze", M, "--sensitivity"], ConfigError, "--sensitivity"),
    (["analyze", M, *D, "--sensitivity", "--sparsities", "half,most"], ConfigError, "--sparsities"),
    (["analyze", M, "--data", "mnist-fashion"], UnknownNameError, "mnist-fashion"),
    (["compress", M, *D, "--recipe", "no-such-recipe.yaml", "--out", "OUT"], ConfigError, "no-such-recipe"),
    (["compress", M, *D, "--recipe", "finetune", "--set", "steps.0.config", "--out", "OUT"], ConfigError, "Override"),
    (["compress", M, *D, "--recipe", "finetune", "--set", "steps.7.x=1", "--out", "OUT"], ConfigError, "steps.7"),
    (["distill", M, *D, "--student", "depth:zero", "--out", "OUT"], ConfigError, "depth:zero"),
    (["train", "lenet5", "--data", "digits", "--out", "OUT", "--quiet"], DataError, "digits"),
]


def _argv(args: list[str], out: Path) -> list[str]:
    return [str(out) if a == "OUT" else a for a in args]


def _check(args: list[str], cls: type[Exception], culprit: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    before = snapshot(tmp_path)
    code, _, err = run_cli(args, capsys)
    assert_clean_failure(code, err, culprit)
    assert snapshot(tmp_path) == before
    with pytest.raises(cls) as info:
        main([*args, "--debug"])
    assert type(info.value) is cls
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(("args", "culprit"), USAGE, ids=[" ".join(a[:4]) + f" [{c}]" for a, c in USAGE])
def test_usage_errors(args, culprit, tmp_path, capsys):
    _check(_argv(args, tmp_path / "out"), UsageError, culprit, tmp_path, capsys)


@pytest.mark.parametrize(("args", "cls", "culprit"), PRE_WORK, ids=[c for _, _, c in PRE_WORK])
def test_typed_errors_before_work(args, cls, culprit, tmp_path, capsys):
    _check(_argv(args, tmp_path / "out"), cls, culprit, tmp_path, capsys)


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "afile"
    path.write_text("mine")
    return path


def _nonempty(tmp_path: Path) -> Path:
    path = tmp_path / "notes"
    path.mkdir()
    (path / "keep.txt").write_text("mine")
    return path


# output paths that cannot be written: (name, argv builder, culprit builder)
OUTPUTS = [
    ("train out is a file", lambda t: ["train", M, *D, "--out", str(_file(t))], "afile"),
    ("train out under a file", lambda t: ["train", M, *D, "--out", str(_file(t) / "x")], "afile"),
    ("train out not an artifact", lambda t: ["train", M, *D, "--out", str(_nonempty(t))], "notes"),
    ("compress out is a file", lambda t: ["compress", M, *D, "--recipe", "finetune", "--out", str(_file(t))], "afile"),
    (
        "compress out under a file",
        lambda t: ["compress", M, *D, "--recipe", "finetune", "--out", str(_file(t) / "a" / "b")],
        "afile",
    ),
    ("distill out is a file", lambda t: ["distill", M, *D, "--student", "width:0.5", "--out", str(_file(t))], "afile"),
    ("export onnx is a folder", lambda t: ["export", M, "--onnx", str(t)], "is a folder"),
    ("export onnx under a file", lambda t: ["export", M, "--onnx", str(_file(t) / "m.onnx")], "afile"),
    ("sensitivity out is a file", lambda t: ["analyze", M, "--sensitivity", *D, "--out", str(_file(t))], "afile"),
    ("demo out is a file", lambda t: ["demo", "--out", str(_file(t))], "afile"),
]


@pytest.mark.parametrize(("name", "build", "culprit"), OUTPUTS, ids=[n for n, _, _ in OUTPUTS])
def test_unwritable_outputs_refused_before_work(name, build, culprit, tmp_path, capsys):
    _check(build(tmp_path), OutputError, culprit, tmp_path, capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_refused(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        _check(["train", M, *D, "--out", str(locked / "out")], OutputError, "locked", tmp_path, capsys)
    finally:
        locked.chmod(0o700)


def test_os_error_while_writing_is_one_line(tmp_path, capsys, monkeypatch):
    """An OSError that escapes a command (disk full, permissions) names the file, exit 2."""
    import torchslim.cli.inspect as cli_inspect

    def boom(**_):
        raise PermissionError(13, "Permission denied", str(tmp_path / "x.json"))

    monkeypatch.setattr(cli_inspect, "_technique_summary", lambda *_: boom())
    code, _, err = run_cli(["list"], capsys)
    assert_clean_failure(code, err, "x.json")
    with pytest.raises(OutputError):
        main(["list", "--debug"])


def test_unexpected_error_is_one_line_exit_1(capsys, monkeypatch):
    import torchslim.cli.inspect as cli_inspect

    monkeypatch.setattr(cli_inspect, "_technique_summary", lambda *_: 1 / 0)
    code, _, err = run_cli(["list"], capsys)
    assert code == 1 and "Traceback" not in err and "ZeroDivisionError" in err and "--debug" in err
    with pytest.raises(ZeroDivisionError):
        main(["list", "--debug"])


def test_no_arguments_prints_help(capsys):
    code, out, _ = run_cli([], capsys)
    assert code == 0 and "analyze" in out
