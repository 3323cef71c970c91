"""onnxruntime's profiler, summed per operator type of the optimized graph."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchslim.core.errors import ArtifactError
from torchslim.deploy import export_onnx
from torchslim.deploy.onnxruntime.profile import operator_profile, summarize_trace


def _trace() -> list[dict]:
    events = []
    for run, start in enumerate((0, 100, 200)):
        events.append({"cat": "Session", "name": "model_run", "ts": start, "dur": 90})
        for op, dur in (("Conv", 40 + run), ("Relu", 10)):
            events.append(
                {"cat": "Node", "name": f"n_{op}_kernel_time", "ts": start + 5, "dur": dur, "args": {"op_name": op}}
            )
        events.append({"cat": "Node", "name": "n_Conv_fence_before", "ts": start + 1, "dur": 0, "args": {}})
    return events


def test_summarize_trace_skips_warmup_runs_and_averages_per_op() -> None:
    prof = summarize_trace(_trace(), skip_runs=1, runs=2, threads=2)
    assert prof.runs == 2 and prof.calls_per_run == {"Conv": 1, "Relu": 1}
    assert prof.ms_per_run["Conv"] == pytest.approx((41 + 42) / 2 / 1000)
    assert prof.ms_per_run["Relu"] == pytest.approx(0.010)
    assert prof.share("Relu") == pytest.approx(0.010 / (0.0415 + 0.010))
    assert list(prof.to_dict()["ops"]) == ["Conv", "Relu"]  # slowest first
    with pytest.raises(ArtifactError, match="3 runs"):
        summarize_trace(_trace(), skip_runs=2, runs=2, threads=2)


def test_operator_profile_of_a_real_session(tmp_path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2)).eval()
    export_onnx(model, tmp_path / "m.onnx", torch.randn(1, 3, 8, 8))
    prof = operator_profile(tmp_path / "m.onnx", {"input": torch.randn(4, 3, 8, 8).numpy()}, threads=1, runs=3)
    assert prof.runs == 3 and prof.total_ms > 0
    assert {"GlobalAveragePool", "Gemm"} <= set(prof.ms_per_run)
    assert any(op in prof.ms_per_run for op in ("Conv", "FusedConv"))
