"""A folder of PNGs through `compress`: the data adapters feed a real run and its verdicts fire."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import torchslim as ts


@pytest.mark.slow
def test_image_folder_int8_run_reports_short_calibration(tmp_path):
    rng = np.random.default_rng(0)
    for k in range(3):
        for i in range(12):
            path = tmp_path / "imgs" / f"c{k}" / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, size=(32, 32, 3), dtype=np.uint8)).save(path)
    model = ts.models.build_model("fmnist-cnn", seed=0)
    splits = ts.data.load_splits(tmp_path / "imgs", model=model, batch_size=8)
    assert ts.data.split_sizes(splits) == {"train": 25, "calibration": 4, "validation": 4, "test": 3}
    result = ts.compress(model, splits, recipe="int8", repeats=1, quiet=True)
    (warning,) = [v for v in result.report.warnings() if v.kind == "calibration_short"]
    assert warning.measured == {"step": 0, "asked": 512, "used": 4}
    assert "calibrated on 4 samples; its config asked for 512" in result.report.render()
    saved = result.save(tmp_path / "artifact")
    data = json.loads((saved / "report.json").read_text())
    assert any(v["kind"] == "calibration_short" for v in data["verdicts"])
    assert 'data-kind="calibration_short"' in (saved / "report.html").read_text()


def test_int8_cnn_runs_every_quantized_layer_on_integer_kernels():
    """The census is measured on onnxruntime's optimized graph of the real export, not assumed."""
    model = ts.models.build_model("lenet5", seed=0)
    splits = ts.data.load_splits("fashion-mnist", train_samples=64, eval_samples=64, batch_size=32)
    result = ts.compress(model, splits, recipe="int8", repeats=1, quiet=True)
    census = result.report.after["kernels"]
    assert census["runtime"] == "onnxruntime" and census["integer_activation_layers"] >= 4
    assert census["integer_mac_kernels"] >= census["integer_activation_layers"], census
    assert not [v for v in result.report.warnings() if v.kind == "float_kernels"]
