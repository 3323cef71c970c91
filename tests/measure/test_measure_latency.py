from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import torch

from torchslim.core.errors import ConfigError
from torchslim.measure import compare_latency, measure_latency
from torchslim.measure.latency import stats_from_times


def test_stats_from_known_times() -> None:
    stats = stats_from_times([float(i) for i in range(1, 11)], batch_size=2, threads=1, runtime="x")
    assert stats.median_ms == pytest.approx(5.5)
    assert stats.p10_ms == pytest.approx(1.9)
    assert stats.p90_ms == pytest.approx(9.1)
    assert stats.mean_ms == pytest.approx(5.5)
    assert stats.per_item_ms == pytest.approx(2.75)


def test_measure_latency_sanity_and_threads_restored(toys: SimpleNamespace) -> None:
    model = toys.lenet_300_100()
    model.train()
    before = torch.get_num_threads()
    stats = measure_latency(model, torch.randn(7, 1, 28, 28), batch_size=4, warmup=1, repeats=5, threads=1)
    assert torch.get_num_threads() == before
    assert stats.threads == 1
    assert stats.batch_size == 4
    assert stats.repeats == 5
    assert stats.runtime == "pytorch-eager"
    assert 0 < stats.p10_ms <= stats.median_ms <= stats.p90_ms
    assert model.training  # mode restored


def test_measure_latency_rejects_bad_arguments(toys: SimpleNamespace) -> None:
    model = toys.lenet_300_100()
    with pytest.raises(ConfigError, match="torchslim.deploy"):
        measure_latency(model, torch.randn(1, 784), runtime="onnxruntime")
    with pytest.raises(ConfigError, match="repeats"):
        measure_latency(model, torch.randn(1, 784), repeats=0)


def test_compare_latency_orders_a_slow_and_a_fast_callable() -> None:
    calls: list[str] = []

    def slow() -> None:
        calls.append("a")
        time.sleep(0.004)

    def fast() -> None:
        calls.append("b")
        time.sleep(0.001)

    ratio, comparison = compare_latency(slow, fast, rounds=6, warmup=1)
    assert ratio == pytest.approx(comparison.a.median_ms / comparison.b.median_ms)
    assert ratio > 1.5
    assert comparison.a.repeats == comparison.b.repeats == 6
    timed = calls[2:]
    assert timed[:4] == ["a", "b", "b", "a"]  # interleaved, order alternating each round
