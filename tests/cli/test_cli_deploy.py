"""`torchslim deploy`: every available runtime timed on the user's batch and threads; the fastest kept."""

from __future__ import annotations

import json

from torchslim.cli.main import main


def run(args, capsys):
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def test_deploy_on_onnxruntime_reports_the_pick_and_keeps_the_file(tmp_path, capsys):
    out = tmp_path / "files"
    args = ["deploy", "lenet5", "--target", "onnxruntime", "--latency-batch", "2", "--threads", "1"]
    code, text, err = run([*args, "--out", str(out), "--json"], capsys)
    assert code == 0, err
    selection = json.loads(text)
    assert selection["best"] == "onnxruntime"
    (facts,) = selection["backends"]
    assert facts["name"] == "onnxruntime" and facts["latency"]["median_ms"] > 0
    assert any(p.suffix == ".onnx" for p in out.rglob("*"))


def test_deploy_to_an_unknown_runtime_is_one_line_naming_it(tmp_path, capsys):
    code, _, err = run(["deploy", "lenet5", "--target", "tensorrt"], capsys)
    assert code == 2
    assert "tensorrt" in err and len(err.strip().splitlines()) == 1


def test_deploy_refuses_a_parity_bound_that_is_not_positive(capsys):
    code, _, err = run(["deploy", "lenet5", "--target", "onnxruntime", "--parity-steps", "0"], capsys)
    assert code == 2
    assert "parity_steps" in err and len(err.strip().splitlines()) == 1


def test_deploy_refuses_a_cosine_bound_outside_0_to_1(capsys):
    code, _, err = run(["deploy", "lenet5", "--target", "onnxruntime", "--parity-cosine", "1.5"], capsys)
    assert code == 2
    assert "parity_cosine" in err and len(err.strip().splitlines()) == 1
