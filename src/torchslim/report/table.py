"""Terminal rendering of a `Report` with rich: a before/after table and a per-step list."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console
from rich.table import Table

from torchslim.report.energy import energy_lines

ROWS = (
    ("accuracy", "accuracy", lambda v: f"{100 * v:.2f}%"),
    ("params", "params", lambda v: f"{v:,}"),
    ("nonzero_params", "non-zero params", lambda v: f"{v:,}"),
    ("macs", "MACs", lambda v: f"{v / 1e6:,.2f} M"),
    ("bytes", "bytes on disk", lambda v: _human_bytes(v)),
    ("latency_ms", "latency", lambda v: f"{v:.3f} ms"),
    ("latency_eager_ms", "latency, PyTorch eager", lambda v: f"{v:.3f} ms"),
    ("energy_uj", "energy / inference", lambda v: f"{v:,.2f} uJ"),
)


#: How a quantize step marks a BatchNorm layer it folded (``skipped[bn] = "BatchNorm folded into <conv>"``).
FOLDED_PREFIX = "BatchNorm folded into"


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.2f} {unit}"
        n /= 1000
    return f"{n}"


def _fmt(fmt: Any, value: Any) -> str:
    if value is None:
        return "-"
    try:
        return fmt(value)
    except (TypeError, ValueError):
        return str(value)


#: Label-free quality of the compressed model against the original (``after["agreement"]``).
AGREEMENT_ROWS = (
    ("top1_agreement", "top-1 agreement", lambda v: f"{100 * v:.2f}%"),
    ("top5_agreement", "top-5 agreement", lambda v: f"{100 * v:.2f}%"),
    ("sqnr_db", "output SQNR", lambda v: f"{v:.1f} dB"),
    ("cosine", "output cosine", lambda v: f"{v:.4f}"),
    ("kl_divergence", "KL(original || compressed)", lambda v: f"{v:.4f} nats"),
)


def row_label(report: Any, key: str, label: str) -> str:
    """`label`, with the sample count for accuracy when the stats carry ``accuracy_samples``."""
    if key == "accuracy":
        n = (report.after or report.before).get("accuracy_samples") or report.before.get("accuracy_samples")
        if isinstance(n, int):
            return f"{label} ({n:,} samples)"
    return label


def build_table(report: Any) -> Table:
    table = Table(title=f"torchslim report: {report.model}" + (f" on {report.dataset}" if report.dataset else ""))
    table.add_column("metric")
    table.add_column("before" if report.after is not None else "value", justify="right")
    if report.after is not None:
        table.add_column("after", justify="right")
        table.add_column("after / before", justify="right")
    ratios = report.ratios()
    for key, label, fmt in ROWS:
        before = report.before.get(key)
        if report.after is None:
            if before is not None:
                table.add_row(row_label(report, key, label), _fmt(fmt, before))
            continue
        after = report.after.get(key)
        if before is None and after is None:
            continue
        if key == "accuracy" and before is not None and after is not None:
            change = f"{100 * (after - before):+.2f} pts"
        else:
            ratio = ratios.get(key)
            change = "-" if ratio is None else f"{ratio:.3f}x"
        table.add_row(row_label(report, key, label), _fmt(fmt, before), _fmt(fmt, after), change)
    agreement = (report.after or {}).get("agreement") or {}
    for key, label, fmt in AGREEMENT_ROWS:
        if agreement.get(key) is not None:
            table.add_row(f"{label} ({agreement.get('samples')} samples)", "", _fmt(fmt, agreement[key]), "")
    return table


def render_table(report: Any, *, width: int = 100) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=False, color_system=None)
    console.print(build_table(report))
    notes = []
    runtime = report.before.get("latency_runtime")
    if runtime:
        notes.append(
            f"latency: {runtime}, batch {report.before.get('batch_size')}, "
            f"{report.before.get('threads')} threads, median of repeats"
        )
    deployed = (report.after or {}).get("latency_ms")
    eager_before = report.before.get("latency_eager_ms")
    if report.after and runtime and runtime != "pytorch-eager" and deployed and eager_before:
        notes.append(f"deployed ({runtime}) after vs PyTorch eager before: {deployed / eager_before:.3f}x")
    source = report.before.get("energy_source")
    if source:
        notes.append(f"energy: {source}")
    for side in ("before", "after"):
        stats = getattr(report, side) or {}
        if stats.get("energy_measured_uj") is not None:
            notes.append(f"energy {side}: {stats['energy_measured_uj']:,.2f} uJ {stats.get('energy_measured')}")
    measured = report.before.get("energy_measured")
    if measured and report.before.get("energy_measured_uj") is None:
        notes.append(f"measured energy: {measured}")
    notes.extend(energy_lines(report))
    notes.extend(step_line(step) for step in report.steps)
    notes.extend(report.notes)
    for note in notes:
        console.print(note)
    for verdict in report.verdicts():
        label = "WARNING" if verdict.severity == "warning" else "note"
        style = "bold yellow" if verdict.severity == "warning" else None
        console.print(f"{label}: {verdict.message}", style=style, markup=False, highlight=False)
    return buffer.getvalue()


def skipped_layers(step: dict[str, Any]) -> dict[str, str]:
    """A step's skipped layers, without BatchNorm layers that were folded (they are not skipped)."""
    return {k: v for k, v in (step.get("skipped") or {}).items() if not str(v).startswith(FOLDED_PREFIX)}


def step_line(step: dict[str, Any]) -> str:
    """One line per step: technique, time, BatchNorm folded, layers skipped (with reasons), and the
    settings a step chose itself (distillation's probe: what and why)."""
    line = f"step {step.get('index')}: {step.get('technique')} ({step.get('seconds', 0):.1f} s)"
    folded = len(step.get("skipped") or {}) - len(skipped_layers(step))
    if folded:
        line += f"; folded {folded} BatchNorm layer(s) into their convolutions"
    skipped = skipped_layers(step)
    if skipped:
        line += f"; left {len(skipped)} layer(s) as they were: " + ", ".join(
            f"{k} ({v})" for k, v in list(skipped.items())[:5]
        )
    settings = (step.get("info") or {}).get("settings")
    if isinstance(settings, dict) and settings.get("chosen"):
        line += f"; settings: {settings['chosen']} ({settings.get('reason', 'no reason given')})"
    return line
