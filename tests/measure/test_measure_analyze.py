from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from torchslim.measure import analyze


class Mask(nn.Module):
    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask


def test_analyze_composes_and_leaves_the_model_unchanged(tmp_path: Path, toys: SimpleNamespace) -> None:
    model = toys.SmallCNN(width=4)
    parametrize.register_parametrization(model.conv2, "weight", Mask((torch.rand(8, 4, 3, 3) > 0.5).float()))
    model.train()
    model.bn1.eval()
    loader = [(torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))) for _ in range(2)]
    (tmp_path / "weights.bin").write_bytes(b"\0" * 1234)
    before = toys.snapshot(model)

    stats = analyze(
        model,
        example_input=torch.randn(3, 1, 8, 8),
        loader=loader,
        artifact_dir=tmp_path,
        latency_batch_size=2,
        threads=1,
        repeats=3,
        warmup=1,
    )

    toys.assert_unchanged(before, toys.snapshot(model))
    assert stats.params == sum(p.numel() for p in model.parameters())
    assert stats.nonzero_params < stats.params
    assert stats.macs == 4 * 8 * 8 * 9 + 8 * 4 * 4 * 4 * 9 + 8 * 10  # one sample
    assert stats.bytes == 1234
    assert stats.batch_size == 2 and stats.threads == 1
    assert stats.latency_runtime == "pytorch-eager" and stats.latency_ms == stats.latency_eager_ms > 0
    assert stats.accuracy is not None and 0.0 <= stats.accuracy <= 1.0 and stats.loss > 0
    assert stats.energy_source == "estimate (horowitz-45nm)" and stats.energy_uj > 0
    by_name = {layer.name: layer for layer in stats.layers}
    assert set(by_name) == {"conv1", "bn1", "conv2", "classifier"}
    assert by_name["conv2"].sparsity > 0.3 and by_name["conv2"].macs == 8 * 4 * 4 * 4 * 9
    assert by_name["bn1"].macs == 0 and by_name["bn1"].energy_uj is None
    assert sum(layer.energy_uj or 0.0 for layer in stats.layers) == pytest.approx(stats.energy_uj)
    json.dumps(stats.to_dict())


def test_analyze_with_a_runtime_timer() -> None:
    """A runtime's latency arrives as a RuntimeTimer (torchslim.deploy makes one); measure imports no runtime."""
    from torchslim.measure import LatencyStats

    calls: list[dict[str, object]] = []

    def timer(*, batch_size: int | None, warmup: int, repeats: int, threads: int | None) -> LatencyStats:
        calls.append({"batch_size": batch_size, "warmup": warmup, "repeats": repeats, "threads": threads})
        return LatencyStats(7.0, 6.0, 8.0, 7.0, repeats, batch_size, threads, "fake-runtime")

    model = nn.Linear(784, 10)
    stats = analyze(
        model,
        example_input=torch.randn(1, 784),
        runtime_timer=timer,
        latency_batch_size=3,
        repeats=3,
        warmup=1,
        threads=1,
    )
    assert calls == [{"batch_size": 3, "warmup": 1, "repeats": 3, "threads": 1}]
    assert stats.latency_runtime == "fake-runtime" and stats.latency_ms == 7.0
    assert stats.latency_eager_ms > 0 and stats.latency_eager_ms != 7.0
    assert stats.bytes is None and stats.accuracy is None
    assert stats.macs == 7840
    assert stats.layers[0].name == "(root)"


def test_analyze_lenet_numbers(toys: SimpleNamespace) -> None:
    stats = analyze(toys.lenet_300_100(), example_input=torch.randn(2, 1, 28, 28), repeats=2, warmup=0)
    assert (stats.params, stats.macs) == (266_610, 266_200)
    assert stats.energy_uj == pytest.approx(2.56554, rel=1e-3)
    assert [layer.weight_bits for layer in stats.layers] == [32, 32, 32]
