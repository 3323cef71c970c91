"""Reports as data: a `Report` holds before/after model stats and per-step facts; renderers format it.

Reports never measure anything themselves; they only format and compare what `torchslim.measure`
returned (as plain dicts, so a report read back from JSON renders the same way).
"""

from __future__ import annotations

import dataclasses
import json
import platform
from typing import Any

import torch

SUMMARY_KEYS = (
    "accuracy",
    "params",
    "nonzero_params",
    "macs",
    "bytes",
    "latency_ms",
    "latency_eager_ms",
    "energy_uj",
)


def environment() -> dict[str, Any]:
    """Versions, threads and CPU, so a reader knows where the numbers were measured."""
    import numpy

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import os

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu": cpu,
        "platform": platform.platform(),
    }


@dataclasses.dataclass
class Report:
    """Before/after stats of one model (dicts from ``ModelStats.to_dict()``) and what each step did."""

    model: str
    before: dict[str, Any]
    after: dict[str, Any] | None = None
    steps: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    recipe: dict[str, Any] | None = None
    dataset: str | None = None
    environment: dict[str, Any] = dataclasses.field(default_factory=environment)
    notes: list[str] = dataclasses.field(default_factory=list)

    def ratios(self) -> dict[str, float | None]:
        """after / before for every summary key both sides have (None when undefined)."""
        out: dict[str, float | None] = {}
        if not self.after:
            return out
        for key in SUMMARY_KEYS:
            a, b = self.before.get(key), self.after.get(key)
            if key == "accuracy":
                continue
            if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a:
                out[key] = b / a
            else:
                out[key] = None
        return out

    def verdicts(self) -> list[str]:
        """Plain statements about what the compression did *not* achieve, from the measured numbers."""
        if not self.after:
            return []
        out: list[str] = []
        r = self.ratios()
        runtime = self.after.get("latency_runtime") or "this runtime"
        macs, latency = r.get("macs"), r.get("latency_ms")
        if macs is not None and latency is not None and macs < 0.9 and latency > 0.95:
            out.append(f"fewer MACs ({macs:.2f}x) did not make the model faster on {runtime} (latency {latency:.2f}x)")
        elif latency is not None and latency > 1.05:
            out.append(f"the compressed model is slower on {runtime} (latency {latency:.2f}x)")
        nonzero = r.get("nonzero_params")
        if nonzero is not None and nonzero < 0.9 and (macs is None or macs > 0.95):
            out.append(
                "unstructured sparsity: dense kernels still compute the zeros, so the gain is bytes on disk, not speed"
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["ratios"] = self.ratios()
        out["verdicts"] = self.verdicts()
        if self.after and self.before.get("accuracy") is not None and self.after.get("accuracy") is not None:
            out["accuracy_drop"] = self.before["accuracy"] - self.after["accuracy"]
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})

    def render(self) -> str:
        """The before/after table as plain text (what `print(report)` shows)."""
        from torchslim.report.table import render_table

        return render_table(self)

    def __str__(self) -> str:
        return self.render()
