"""Latency: warm-up, then the median of timed repeats, with the thread count recorded.

This machine class is noisy (2 shared cores), so:

* one latency is the **median** of ``repeats`` timed calls after ``warmup`` untimed ones, with the
  10th/90th percentiles alongside to show the spread;
* the thread count is set explicitly for the measurement (``torch.set_num_threads`` for PyTorch,
  ``intra_op_num_threads`` for onnxruntime) and the previous PyTorch setting is restored;
* two implementations are compared with :func:`compare_latency`, which interleaves them
  (A B B A A B ...) so that drifts in machine load hit both equally, and reports the ratio of
  medians. Comparing two separately measured medians is not reliable here.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from torchslim.core.errors import ArtifactError, ConfigError
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


def _check_counts(warmup: int, repeats: int) -> None:
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


def _time_calls(fn: Callable[[], Any], *, warmup: int, repeats: int, sync: Callable[[], None]) -> list[float]:
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
    _check_counts(warmup, repeats)
    if runtime not in RUNTIMES:
        raise ConfigError(
            f"runtime={runtime!r} is not supported by measure_latency (known: {list(RUNTIMES)}); "
            "use measure_latency_onnx for onnxruntime."
        )
    device = model_device(model)
    inputs = example_input if batch_size is None else with_batch_size(example_input, batch_size)
    inputs = to_device(inputs, device)
    try:
        actual_batch: int | None = batch_size_of(inputs)
    except Exception:  # noqa: BLE001 - the batch size is informational only
        actual_batch = batch_size
    with num_threads(threads) as used_threads, eval_mode(model), torch.no_grad():
        times = _time_calls(
            lambda: call_model(model, inputs), warmup=warmup, repeats=repeats, sync=lambda: _sync(device)
        )
    return stats_from_times(times, batch_size=actual_batch, threads=used_threads, runtime=runtime)


def _onnx_feeds(session: Any, feeds: Any) -> dict[str, np.ndarray]:
    names = [i.name for i in session.get_inputs()]
    if isinstance(feeds, (torch.Tensor, np.ndarray)):
        if len(names) != 1:
            raise ConfigError(f"The ONNX model has inputs {names}; pass feeds as a dict name -> array.")
        feeds = {names[0]: feeds}
    if not isinstance(feeds, Mapping):
        raise ConfigError(f"feeds must be a dict of input name -> array, got {type(feeds).__name__}.")
    out = {}
    for key, value in feeds.items():
        if key not in names:
            raise ConfigError(f"feeds key {key!r} is not an input of the ONNX model; inputs: {names}.")
        out[key] = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    missing = [n for n in names if n not in out]
    if missing:
        raise ConfigError(f"feeds lack ONNX model inputs {missing}.")
    return out


def measure_latency_onnx(
    onnx_path: str | Path,
    feeds: Any,
    *,
    batch_size: int | None = None,
    warmup: int = 3,
    repeats: int = 20,
    threads: int | None = None,
    providers: Sequence[str] | None = None,
) -> LatencyStats:
    """Latency of an ONNX model under onnxruntime (``runtime="onnxruntime"``).

    `feeds` is a dict input name -> array/tensor (or one array for a single-input model).
    `batch_size` repeats the first sample of every feed to that batch size. `threads` becomes
    ``intra_op_num_threads`` (None: the current ``torch.get_num_threads()``, so PyTorch and
    onnxruntime are compared at the same thread count); ``inter_op_num_threads`` is 1 and the
    execution mode sequential.
    """
    import onnxruntime as ort

    _check_counts(warmup, repeats)
    path = Path(onnx_path)
    if not path.is_file():
        raise ArtifactError(f"ONNX file {str(path)!r} does not exist.")
    used_threads = torch.get_num_threads() if threads is None else threads
    if isinstance(used_threads, bool) or not isinstance(used_threads, int) or used_threads < 1:
        raise ConfigError(f"threads={threads!r} must be a positive integer or None.")
    options = ort.SessionOptions()
    options.intra_op_num_threads = used_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(
        str(path), sess_options=options, providers=list(providers or ["CPUExecutionProvider"])
    )
    arrays = _onnx_feeds(session, feeds)
    if batch_size is not None:
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size!r} must be >= 1.")
        arrays = {
            k: np.ascontiguousarray(np.repeat(v[:1], batch_size, axis=0)) if v.ndim > 0 else v
            for k, v in arrays.items()
        }
    first = next(iter(arrays.values()))
    actual_batch = int(first.shape[0]) if first.ndim > 0 else None
    times = _time_calls(lambda: session.run(None, arrays), warmup=warmup, repeats=repeats, sync=lambda: None)
    return stats_from_times(times, batch_size=actual_batch, threads=used_threads, runtime="onnxruntime")


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
    _check_counts(warmup, rounds)
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
    "LatencyComparison", "LatencyStats", "compare_latency", "measure_latency", "measure_latency_onnx",
    "stats_from_times",
]
