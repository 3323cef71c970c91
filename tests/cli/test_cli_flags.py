"""One meaning per flag name, and `--out` never silently replaces an artifact."""

import hashlib

import pytest

TRAIN = [
    "train", "lenet-300-100", "--data", "fashion-mnist", "--epochs", "0", "--train-samples", "64",
    "--eval-samples", "32", "--threads", "1", "--quiet", "--json",
]  # fmt: skip


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize("command", ["analyze", "compress", "train", "export", "deploy"])
def test_batch_size_is_refused_with_the_flags_that_replaced_it(command, cli):
    code, _, err = cli([command, "lenet-300-100", "--batch-size", "4"])
    assert code == 2
    for flag in ("--latency-batch", "--train-batch-size", "--parity-batch"):
        assert flag in err


def test_existing_artifact_needs_force(tmp_path, cli):
    out = tmp_path / "model"
    code, _, err = cli([*TRAIN, "--out", str(out)])
    assert code == 0, err
    before = digest(out)
    code, _, err = cli([*TRAIN, "--seed", "1", "--out", str(out)])
    assert code == 2
    assert "--force" in err and str(out) in err
    assert digest(out) == before, "a refused run must leave the artifact untouched"
    code, _, err = cli([*TRAIN, "--seed", "1", "--out", str(out), "--force"])
    assert code == 0, err
    assert (out / "report.json").exists() or any(out.iterdir())


def test_report_open_opens_the_html_report(tmp_path, cli, monkeypatch):
    out = tmp_path / "model"
    assert cli([*TRAIN, "--out", str(out)])[0] == 0
    opened = []
    monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url) or True)
    (out / "report.html").write_text("<html></html>")
    code, text, _ = cli(["report", str(out), "--open"])
    assert code == 0 and text.strip()
    assert opened == [(out / "report.html").resolve().as_uri()]
    monkeypatch.setattr("webbrowser.open", lambda url: False)
    code, _, err = cli(["report", str(out), "--open"])
    assert code == 0 and str((out / "report.html").resolve()) in err
    (out / "report.html").unlink()
    code, _, err = cli(["report", str(out), "--open"])
    assert code == 2 and "report.html" in err
