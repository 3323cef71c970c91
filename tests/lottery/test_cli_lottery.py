"""`torchslim lottery` end to end on a small Fashion-MNIST cut; a rerun resumes; the ticket feeds `compress`."""

import json

import pytest
import torch

import torchslim as ts

ARGS = [
    "lottery",
    "lenet-300-100",
    "--data",
    "fashion-mnist",
    "--levels",
    "1",
    "--rate",
    "0.5",
    "--rewind",
    "2it",
    "--train-samples",
    "512",
    "--eval-samples",
    "256",
    "--controls",
    "random",
    "--threads",
    "1",
]


@pytest.mark.slow  # real Fashion-MNIST data and two CLI runs: ~10 s on a quiet machine
def test_cli_lottery_writes_curves_and_ticket_and_resumes(cli, tmp_path):
    out = tmp_path / "run"
    code, text, err = cli([*ARGS, "--out", str(out)])
    assert code == 0, err
    assert "weights left" in text and "ticket artifact" in text
    data = json.loads((out / "lottery.json").read_text())
    remaining = data["curves"]["weights_remaining"]
    assert remaining[0] == 1.0 and remaining[1] == pytest.approx(0.5, abs=0.01)
    assert data["curves"]["reinit"] == [None, None] and data["curves"]["random"][1] is not None
    ticket = ts.load(out / "ticket")
    kept = sum(int(torch.count_nonzero(ticket.get_submodule(n).weight)) for n in ("fc1", "fc2", "classifier"))
    assert kept == data["levels"][-1]["weights_kept"]
    code, text, err = cli([*ARGS, "--out", str(out)])
    assert code == 0, err
    assert "resumed: levels [0, 1]" in text


def test_cli_lottery_bad_rewind_is_one_clear_line(cli, tmp_path):
    code, _, err = cli([*ARGS[:-6], "--rewind", "3", "--out", str(tmp_path / "x")])
    assert code == 2
    assert "rewind" in err and "Traceback" not in err
