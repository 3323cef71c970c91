"""benchmarks/_nonuniform_binary.py's run_binary (imported by benchmarks/nonuniform.py) on a small
fmnist-cnn and a Fashion-MNIST slice: every measured fact is there and consistent."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import torchslim as ts

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.slow  # a fresh interpreter, an ONNX export and STE steps on real data (~30 s on 2 busy cores)
@pytest.mark.parametrize("kind", ["binary", "ternary"])
def test_run_binary_measures_real_bytes_reload_and_onnx(kind):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    from _nonuniform_binary import run_binary

    torch.manual_seed(0)
    splits = ts.data.load_splits("fashion-mnist", batch_size=64, train_samples=256, eval_samples=128, seed=0)
    model = ts.models.build_model("fmnist-cnn", seed=0, channels=(4, 8), hidden=16)
    found = run_binary(model, splits, seed=0, kind=kind, epochs=1, max_steps=2)
    assert found["kind"] == kind
    assert found["bytes"] < found["fp32_bytes"] and found["ratio"] == pytest.approx(
        found["fp32_bytes"] / found["bytes"]
    )
    assert found["reload_identical"] is True
    assert 0.0 <= found["accuracy"] <= 1.0
    assert found["drop_points"] == pytest.approx(100 * (found["float_accuracy"] - found["accuracy"]))
    assert found["onnx"]["max_abs_diff"] < 1e-3 and found["onnx"]["accuracy"] == pytest.approx(
        found["accuracy"], abs=0.01
    )
    expected_levels = 2 if kind == "binary" else 3
    assert found["levels_per_channel"] and all(n <= expected_levels for n in found["levels_per_channel"].values())
    assert found["info"]["kept_edge_layers"] == {"features.conv1": 8, "classifier": 8}
