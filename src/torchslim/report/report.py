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

from torchslim.report.verdicts import DEFAULT_MAX_DROP, Verdict, compute_verdicts, warnings_of

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


def _version(package: str) -> str | None:
    """The installed version of `package` (from its metadata, without importing it), or None."""
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


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
        "torchslim": _version("torchslim"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": _version("onnxruntime"),
        "numpy": numpy.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu": cpu,
        "platform": platform.platform(),
    }


@dataclasses.dataclass
class Report:
    """Before/after stats of one model (dicts from ``ModelStats.to_dict()``) and what each step did.

    Optional keys the verdicts read when present: ``accuracy_samples`` (how many samples the
    accuracy was measured on), ``agreement`` in `after` (``Agreement.to_dict()``: top-1 agreement,
    SQNR, samples), ``num_classes``; steps' ``info.calibration_samples`` and
    ``info.folded_batchnorm``.
    """

    model: str
    before: dict[str, Any]
    after: dict[str, Any] | None = None
    steps: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    recipe: dict[str, Any] | None = None
    dataset: str | None = None
    environment: dict[str, Any] = dataclasses.field(default_factory=environment)
    notes: list[str] = dataclasses.field(default_factory=list)
    num_classes: int | None = None
    """Classes of the task (for the near-chance verdict); else ``before["num_classes"]`` if present."""
    max_drop: float = DEFAULT_MAX_DROP
    """The accuracy (or 1 - top-1 agreement) drop past which a ``quality_drop`` warning fires."""
    energy: dict[str, Any] | None = None
    """The run's energy and its payback (:func:`torchslim.measure.payback.energy_section`), when recorded."""

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

    def verdicts(self) -> list[Verdict]:
        """Warnings and facts computed from the measured numbers (see report/verdicts.py)."""
        num_classes = self.num_classes if self.num_classes is not None else self.before.get("num_classes")
        return compute_verdicts(
            self.before,
            self.after,
            self.steps,
            num_classes=num_classes if isinstance(num_classes, int) else None,
            max_drop=self.max_drop,
        )

    def warnings(self) -> list[Verdict]:
        """The warning verdicts: ``strict`` runs exit non-zero when this is not empty."""
        return warnings_of(self.verdicts())

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["ratios"] = self.ratios()
        out["verdicts"] = [v.to_dict() for v in self.verdicts()]
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
