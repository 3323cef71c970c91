"""Latency on onnxruntime (moved here from measure/: timing on a runtime belongs to deploy)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from torchslim.core.errors import ArtifactError, ConfigError
from torchslim.deploy import deploy_file, measure_latency_onnx
from torchslim.measure import analyze


def test_onnx_latency(tmp_path: Path, toys: SimpleNamespace) -> None:
    w = np.random.default_rng(0).standard_normal((10, 784)).astype(np.float32)
    path = toys.linear_onnx(tmp_path / "linear.onnx", w, np.zeros(10, np.float32))
    x = np.ones((3, 784), np.float32)
    stats = measure_latency_onnx(path, {"x": x}, batch_size=2, warmup=1, repeats=4, threads=1)
    assert stats.runtime == "onnxruntime"
    assert stats.threads == 1 and stats.batch_size == 2 and stats.repeats == 4
    assert 0 < stats.p10_ms <= stats.median_ms <= stats.p90_ms
    assert measure_latency_onnx(path, torch.ones(3, 784), repeats=1).batch_size == 3  # a tensor for one input
    with pytest.raises(ConfigError, match="not an input"):
        measure_latency_onnx(path, {"nope": x}, repeats=1)
    with pytest.raises(ConfigError, match="repeats"):
        measure_latency_onnx(path, {"x": x}, repeats=0)
    with pytest.raises(ArtifactError, match="does not exist"):
        measure_latency_onnx(tmp_path / "missing.onnx", {"x": x}, repeats=1)


def test_analyze_with_onnx_latency(tmp_path: Path, toys: SimpleNamespace) -> None:
    model = nn.Linear(784, 10)
    path = toys.linear_onnx(
        tmp_path / "m.onnx", model.weight.detach().numpy().astype(np.float32), model.bias.detach().numpy()
    )
    x = torch.randn(1, 784)
    stats = analyze(model, example_input=x, runtime_timer=deploy_file(path, x).timer, repeats=3, warmup=1, threads=1)
    assert stats.latency_runtime == "onnxruntime"
    assert stats.latency_ms > 0 and stats.latency_eager_ms > 0
    assert stats.bytes is None and stats.accuracy is None
    assert stats.macs == 7840
