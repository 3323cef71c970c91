"""Where an ONNX model's time goes in onnxruntime: per-operator time from onnxruntime's own profiler.

:func:`operator_profile` runs a model with ``SessionOptions.enable_profiling``, reads the JSON
trace onnxruntime writes (one ``"cat": "Node"`` event per kernel call, ``dur`` in microseconds) and
sums the kernel time per operator type of the *optimized* graph (``QLinearConv``, ``QLinearAdd``,
``QuantizeLinear``, ...), so a profile shows which operators a fusion removed and what is left in
float. Warm-up runs are made in the same session and left out of the sums.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from torchslim.core.errors import ArtifactError, ConfigError


@dataclasses.dataclass
class OperatorProfile:
    """Kernel time per operator type, averaged over the profiled runs."""

    runs: int
    threads: int
    ms_per_run: dict[str, float]  # op type -> kernel milliseconds per run
    calls_per_run: dict[str, int]  # op type -> kernel calls per run (nodes of that type)

    @property
    def total_ms(self) -> float:
        """Sum of all kernel times per run (less than wall time: it leaves out the session's overhead)."""
        return sum(self.ms_per_run.values())

    def share(self, op: str) -> float:
        """The fraction of the kernel time spent in operators of type `op`."""
        total = self.total_ms
        return self.ms_per_run.get(op, 0.0) / total if total > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        ops = sorted(self.ms_per_run, key=lambda k: -self.ms_per_run[k])
        return {
            "runs": self.runs,
            "threads": self.threads,
            "total_ms": round(self.total_ms, 4),
            "ops": {k: {"ms": round(self.ms_per_run[k], 4), "calls": self.calls_per_run.get(k, 0)} for k in ops},
        }


def _kernel_events(trace: Any) -> list[dict[str, Any]]:
    events = trace if isinstance(trace, list) else trace.get("traceEvents", [])
    return [
        e
        for e in events
        if isinstance(e, dict)
        and e.get("cat") == "Node"
        and str(e.get("name", "")).endswith("_kernel_time")
        and isinstance(e.get("args"), dict)
        and "op_name" in e["args"]
    ]


def summarize_trace(trace: Any, *, skip_runs: int, runs: int, threads: int) -> OperatorProfile:
    """Sum the kernel events of an onnxruntime profile `trace` per operator type.

    The first `skip_runs` session runs (warm-up) are dropped: kernel events are grouped into runs
    by the ``model_run`` events that enclose them.
    """
    events = trace if isinstance(trace, list) else trace.get("traceEvents", [])
    run_spans = sorted(
        (int(e["ts"]), int(e["ts"]) + int(e["dur"]))
        for e in events
        if isinstance(e, dict) and e.get("cat") == "Session" and e.get("name") == "model_run"
    )
    kept = run_spans[skip_runs:]
    if len(kept) < runs:
        raise ArtifactError(f"onnxruntime profile has {len(run_spans)} runs, expected {skip_runs + runs}.")
    ms: dict[str, float] = {}
    calls: dict[str, int] = {}
    for e in _kernel_events(trace):
        ts = int(e["ts"])
        if not any(lo <= ts <= hi for lo, hi in kept):
            continue
        op = str(e["args"]["op_name"])
        ms[op] = ms.get(op, 0.0) + float(e["dur"]) / 1000.0
        calls[op] = calls.get(op, 0) + 1
    n = len(kept)
    return OperatorProfile(
        runs=n,
        threads=threads,
        ms_per_run={k: v / n for k, v in ms.items()},
        calls_per_run={k: round(v / n) for k, v in calls.items()},
    )


def operator_profile(
    path: str | Path, feeds: Mapping[str, np.ndarray], *, threads: int = 2, runs: int = 20, warmup: int = 3
) -> OperatorProfile:
    """Profile `runs` calls of the ONNX model at `path` on `feeds` (after `warmup` calls) with
    onnxruntime's profiler; kernel time per operator type of the optimized graph."""
    import onnxruntime as ort

    if runs < 1 or warmup < 0:
        raise ConfigError(f"operator_profile: runs={runs} must be >= 1 and warmup={warmup} >= 0.")
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"ONNX file {str(path)!r} does not exist.")
    with tempfile.TemporaryDirectory(prefix="torchslim-profile-") as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort_profile")
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        for _ in range(warmup + runs):
            session.run(None, dict(feeds))
        trace_path = Path(session.end_profiling())
        trace = json.loads(trace_path.read_text())
    return summarize_trace(trace, skip_runs=warmup, runs=runs, threads=threads)


__all__ = ["OperatorProfile", "operator_profile", "summarize_trace"]
