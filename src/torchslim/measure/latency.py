"""Latency: warm-up, then the median of timed repeats, with the thread count recorded.

This machine class is noisy (2 shared cores), so:

* one latency is the **median** of ``repeats`` timed calls after ``warmup`` untimed ones, with the
  10th/90th percentiles alongside to show the spread;
* the thread count is set explicitly for the measurement (``torch.set_num_threads``) and the previous
  setting is restored;
* two implementations are compared with :func:`compare_latency`, which interleaves them
  (A B B A A B ...) so that drifts in machine load hit both equally, and reports the ratio of
  medians. Comparing two separately measured medians is not reliable here.

Timing on a deployment runtime (onnxruntime, later ExecuTorch / OpenVINO) belongs to
:mod:`torchslim.deploy`, which reuses :func:`time_calls` and :func:`stats_from_times`;
:func:`torchslim.measure.analyze` takes such a timing as a :class:`RuntimeTimer`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from torchslim.core.errors import ConfigError
from torchslim.measure._util import (
    batch_size_of,
    call_model,
    eval_mode,
    model_device,
    num_threads,
    to_device,
    with_batch_size,
)

RUNTIMES = ("pytorch-eager",)


@dataclasses.dataclass(frozen=True)
class LatencyStats:
    """Latency of one call (one batch) in milliseconds: median, 10th/90th percentile and mean."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    mean_ms: float
    repeats: int
    batch_size: int | None
    threads: int | None
    runtime: str

    @property
    def per_item_ms(self) -> float | None:
        """Median latency divided by the batch size (None when the batch size is unknown)."""
        return None if not self.batch_size else self.median_ms / self.batch_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class RuntimeTimer(Protocol):
    """Times a model already deployed to a runtime (see :mod:`torchslim.deploy`) on its example input.

    `batch_size` repeats the first sample to that batch size; `threads` is the thread count PyTorch
    eager was measured with, so both runtimes are compared at the same count.
    """

    def __call__(self, *, batch_size: int | None, warmup: int, repeats: int, threads: int | None) -> LatencyStats: ...


def check_counts(warmup: int, repeats: int) -> None:
    """Refuse a negative `warmup` or a `repeats` below 1 (non-integers too) with a ConfigError."""
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ConfigError(f"warmup={warmup!r} must be an integer >= 0.")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ConfigError(f"repeats={repeats!r} must be an integer >= 1.")


def stats_from_times(
    times_ms: Sequence[float], *, batch_size: int | None, threads: int | None, runtime: str
) -> LatencyStats:
    """Summarise a list of per-call times (ms): median, p10, p90 (linear interpolation), mean."""
    if not times_ms:
        raise ConfigError("No timings to summarise.")
    arr = np.asarray(times_ms, dtype=np.float64)
    return LatencyStats(
        median_ms=float(np.median(arr)),
        p10_ms=float(np.percentile(arr, 10)),
        p90_ms=float(np.percentile(arr, 90)),
        mean_ms=float(arr.mean()),
        repeats=len(arr),
        batch_size=batch_size,
        threads=threads,
        runtime=runtime,
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], Any], *, warmup: int, repeats: int, sync: Callable[[], None]) -> list[float]:
    """`warmup` untimed calls of `fn`, then the times (ms) of `repeats` calls, each followed by `sync`."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        fn()
        sync()
        times.append((time.perf_counter_ns() - start) / 1e6)
    return times


def measure_latency(
    model: nn.Module,
    example_input: Any,
    *,
    batch_size: int | None = None,
    warmup: int = 3,
    repeats: int = 20,
    threads: int | None = None,
    runtime: str = "pytorch-eager",
) -> LatencyStats:
    """Latency of ``model(example_input)`` in eval mode under ``torch.no_grad``.

    `batch_size` repeats the first sample of `example_input` to that batch size (None: use the input
    as given). `threads` sets ``torch.set_num_threads`` for the measurement and restores the previous
    value; the thread count used is recorded. The model's modes are restored afterwards.
    """
    check_counts(warmup, repeats)
    if runtime not in RUNTIMES:
        raise ConfigError(
            f"runtime={runtime!r} is not supported by measure_latency (known: {list(RUNTIMES)}); "
            "time a runtime through torchslim.deploy (e.g. deploy.measure_latency_onnx for onnxruntime)."
        )
    device = model_device(model)
    inputs = example_input if batch_size is None else with_batch_size(example_input, batch_size)
    inputs = to_device(inputs, device)
    try:
        actual_batch: int | None = batch_size_of(inputs)
    except Exception:  # noqa: BLE001 - the batch size is informational only
        actual_batch = batch_size
    with num_threads(threads) as used_threads, eval_mode(model), torch.no_grad():
        times = time_calls(
            lambda: call_model(model, inputs), warmup=warmup, repeats=repeats, sync=lambda: _sync(device)
        )
    return stats_from_times(times, batch_size=actual_batch, threads=used_threads, runtime=runtime)


@dataclasses.dataclass(frozen=True)
class LatencyComparison:
    """Interleaved timings of two callables; ``ratio = a.median_ms / b.median_ms`` (> 1: B is faster)."""

    a: LatencyStats
    b: LatencyStats
    ratio: float
    rounds: int


def compare_latency(
    fn_a: Callable[[], Any],
    fn_b: Callable[[], Any],
    *,
    rounds: int = 20,
    warmup: int = 2,
    threads: int | None = None,
    sync: Callable[[], None] | None = None,
) -> tuple[float, LatencyComparison]:
    """Time `fn_a` and `fn_b` alternately and return ``(median_a / median_b, comparison)``.

    Each round times one call of each; the order alternates A B, B A, A B, ... so neither callable
    always runs first (cache warmth and frequency changes fall on both). A ratio of 2.0 means B
    takes half the time of A. `threads` sets ``torch.set_num_threads`` for the comparison (restored
    afterwards); `sync` is called after each call (e.g. ``torch.cuda.synchronize``).
    """
    check_counts(warmup, rounds)
    sync_fn = sync or (lambda: None)
    with num_threads(threads) as used_threads:
        for _ in range(warmup):
            fn_a()
            fn_b()
        sync_fn()
        times: dict[str, list[float]] = {"a": [], "b": []}
        fns = {"a": fn_a, "b": fn_b}
        for i in range(rounds):
            order = ("a", "b") if i % 2 == 0 else ("b", "a")
            for key in order:
                start = time.perf_counter_ns()
                fns[key]()
                sync_fn()
                times[key].append((time.perf_counter_ns() - start) / 1e6)
    stats_a = stats_from_times(times["a"], batch_size=None, threads=used_threads, runtime="callable")
    stats_b = stats_from_times(times["b"], batch_size=None, threads=used_threads, runtime="callable")
    ratio = stats_a.median_ms / stats_b.median_ms if stats_b.median_ms > 0 else float("inf")
    return ratio, LatencyComparison(a=stats_a, b=stats_b, ratio=ratio, rounds=rounds)


__all__ = [
    "LatencyComparison",
    "LatencyStats",
    "RuntimeTimer",
    "check_counts",
    "compare_latency",
    "measure_latency",
    "stats_from_times",
    "time_calls",
]
