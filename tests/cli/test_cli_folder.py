"""`torchslim compress MODEL --data FOLDER`: the user's own images, judged by agreement; --strict."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from torchslim.cli.main import main


def run(args, capsys):
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def gray_folder(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(20):
        Image.fromarray(rng.integers(0, 255, size=(28, 28), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_compress_a_folder_of_loose_images_reports_agreement(gray_folder, tmp_path, capsys):
    out = tmp_path / "slim"
    args = ["compress", "lenet5", "--data", str(gray_folder), "--recipe", "int8", "--out", str(out)]
    code, text, err = run([*args, "--preprocess", "size=28,channels=1", "--quiet"], capsys)
    assert code == 0, err
    assert f"HTML report: {out / 'report.html'}" in text
    report = json.loads((out / "report.json").read_text())
    assert report["after"]["accuracy"] is None
    assert report["after"]["agreement"]["samples"] == 10  # the held-out half of 20 unlabelled images
    kinds = {v["kind"] for v in report["verdicts"]}
    assert "calibration_short" in kinds  # 10 images calibrated where the recipe asks for 512


def test_strict_turns_a_warning_into_exit_code_3(gray_folder, tmp_path, capsys):
    out = tmp_path / "strict"
    args = ["compress", "lenet5", "--data", str(gray_folder), "--recipe", "int8", "--out", str(out), "--strict"]
    code, _, err = run([*args, "--preprocess", "size=28,channels=1", "--quiet"], capsys)
    assert code == 3
    assert "--strict: the report has" in err
    assert (out / "report.json").is_file()  # the artifact is still written: the warning is about quality


def test_preprocess_is_refused_for_a_builtin_dataset(tmp_path, capsys):
    args = ["compress", "lenet5", "--data", "digits", "--recipe", "int8", "--out", str(tmp_path / "x")]
    code, _, err = run([*args, "--preprocess", "size=8"], capsys)
    assert code == 2
    assert "--preprocess applies to data read from a path" in err
    assert not (tmp_path / "x").exists()
