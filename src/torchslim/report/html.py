"""A self-contained HTML report: charts embedded as base64 PNG, no network, no external files.

The page holds the warnings (styled as warnings), the summary table, a per-layer before/after
table, before/after bars (accuracy, bytes, latency, energy), parameters kept per layer (when layer
sizes changed: structured pruning) or else per-layer sparsity, before/after bit-widths per layer,
sensitivity curves when a step computed them, each step, the recipe (settings that differ from the
defaults shown, defaults folded away) and the environment. A small inline script counts the charts
that decoded, the warnings laid out with their style and the per-layer rows shown, and writes them
to ``<body data-charts-rendered data-warnings-styled data-layer-rows>``, so a headless browser test
can check that they really render.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import jinja2
import yaml

from torchslim.report import plots
from torchslim.report.details import layer_rows, split_recipe
from torchslim.report.energy import energy_rows
from torchslim.report.table import AGREEMENT_ROWS, ROWS, _fmt, row_label, skipped_layers


def _data_uri(png: bytes | None) -> str | None:
    return None if png is None else "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _sensitivity_from_steps(steps: list[dict[str, Any]]) -> dict[str, Any]:
    for step in steps:
        curves = (step.get("info") or {}).get("sensitivity")
        if isinstance(curves, dict) and curves.get("curves"):
            return curves
    return {}


def _rows(report: Any) -> list[dict[str, str]]:
    ratios = report.ratios()
    rows = []
    for key, label, fmt in ROWS:
        before = report.before.get(key)
        after = report.after.get(key) if report.after else None
        if before is None and after is None:
            continue
        if key == "accuracy" and before is not None and after is not None:
            change = f"{100 * (after - before):+.2f} pts"
        else:
            ratio = ratios.get(key)
            change = "" if ratio is None else f"{ratio:.3f}x"
        rows.append(
            {
                "label": row_label(report, key, label),
                "before": _fmt(fmt, before),
                "after": _fmt(fmt, after) if report.after else "",
                "change": change,
            }
        )
    agreement = (report.after or {}).get("agreement") or {}
    for key, label, fmt in AGREEMENT_ROWS:
        if agreement.get(key) is not None:
            rows.append(
                {
                    "label": f"{label} ({agreement.get('samples')} samples)",
                    "before": "",
                    "after": _fmt(fmt, agreement[key]),
                    "change": "",
                }
            )
    return rows


def _structure_chart(before: list[dict[str, Any]], after: list[dict[str, Any]] | None) -> tuple[str, bytes | None]:
    """Parameters kept per layer when the compression changed layer sizes (structured pruning),
    else the per-layer sparsity (of the after side when there is one)."""
    if after is not None:
        sizes = {r.get("name"): r.get("params") for r in after}
        if any(sizes.get(r.get("name")) != r.get("params") for r in before if r.get("params")):
            rows = plots.kept_rows(before, after)
            title = "parameters kept per layer (after / before)"
            return "Per-layer parameters kept", plots.layer_chart(
                rows, "kept", title=title, ylabel="kept (%)", scale=100.0
            )
    layers = after if after is not None else before
    title = "sparsity per layer (after)" if after is not None else "sparsity per layer"
    return "Per-layer sparsity", plots.layer_chart(layers, "sparsity", title=title, ylabel="sparsity (%)", scale=100.0)


def render_html(report: Any, *, sensitivity: dict[str, Any] | None = None) -> str:
    """Render `report` (a :class:`torchslim.report.Report`) as one self-contained HTML page."""
    before_layers = report.before.get("layers") or []
    after_layers = (report.after or {}).get("layers") if report.after else None
    charts = []
    for title, png in (
        ("Before / after", plots.before_after_bars(report.before, report.after)),
        _structure_chart(before_layers, after_layers),
        (
            "Per-layer weight bit-width",
            plots.layer_pair_chart(
                before_layers, after_layers, "weight_bits", title="weight bits per layer", ylabel="bits"
            ),
        ),
        ("Sensitivity", plots.sensitivity_curves(sensitivity or _sensitivity_from_steps(report.steps))),
    ):
        uri = _data_uri(png)
        if uri is not None:
            charts.append({"title": title, "uri": uri})
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("torchslim.report", "templates"),
        autoescape=True,
    )
    template = env.get_template("report.html.j2")
    layer_columns, layers_table = layer_rows(report.before, report.after)
    steps = [
        dict(step, left=skipped_layers(step), folded=len(step.get("skipped") or {}) - len(skipped_layers(step)))
        for step in report.steps
    ]
    return template.render(
        report=report,
        verdicts=report.verdicts(),
        steps=steps,
        layer_columns=layer_columns,
        layers_table=layers_table,
        recipe_steps=split_recipe(report.recipe),
        rows=_rows(report),
        charts=charts,
        recipe_yaml=yaml.safe_dump(report.recipe, sort_keys=False) if report.recipe else None,
        dump=lambda value: yaml.safe_dump(value, sort_keys=False).strip(),
        before=report.before,
        energy_rows=energy_rows(report),
    )


def write_html(report: Any, path: str | Path, **kwargs: Any) -> Path:
    from torchslim.io.atomic import write_text

    path = Path(path)
    write_text(path, render_html(report, **kwargs))
    return path
