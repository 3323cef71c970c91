"""Charts for the HTML report, drawn with matplotlib (Agg) and returned as PNG bytes.

Each function takes plain report dicts and returns PNG bytes or None when there is nothing to plot.
"""

from __future__ import annotations

import io
from typing import Any

BAR_METRICS = (
    ("accuracy", "accuracy (%)", 100.0),
    ("bytes", "bytes on disk (KB)", 1e-3),
    ("latency_ms", "latency (ms)", 1.0),
    ("energy_uj", "energy / inference (uJ)", 1.0),
)


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def before_after_bars(before: dict[str, Any], after: dict[str, Any] | None) -> bytes | None:
    """One small bar chart per metric (accuracy, bytes, latency, energy), before vs after."""
    metrics = [(k, label, scale) for k, label, scale in BAR_METRICS if before.get(k) is not None]
    if not metrics:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.0))
    axes = list(axes) if len(metrics) > 1 else [axes]
    for ax, (key, label, scale) in zip(axes, metrics, strict=True):
        names, values, colors = ["before"], [before[key] * scale], ["#8c8c8c"]
        if after is not None and after.get(key) is not None:
            names.append("after")
            values.append(after[key] * scale)
            colors.append("#2a7ab0")
        bars = ax.bar(names, values, color=colors)
        ax.bar_label(bars, fmt="%.3g", fontsize=8)
        ax.set_title(label, fontsize=10)
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return _png(fig)


def layer_chart(layers: list[dict[str, Any]], key: str, *, title: str, ylabel: str, scale: float = 1.0) -> bytes | None:
    """A per-layer bar chart of `key` (e.g. sparsity or weight_bits) for layers that have it."""
    rows = [(row["name"], row[key]) for row in layers if row.get(key) is not None and row.get("params", 1)]
    if not rows:
        return None
    plt = _pyplot()
    width = max(5.0, min(14.0, 0.35 * len(rows) + 2))
    fig, ax = plt.subplots(figsize=(width, 3.2))
    ax.bar(range(len(rows)), [v * scale for _, v in rows], color="#2a7ab0")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([n for n, _ in rows], rotation=60, ha="right", fontsize=7)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return _png(fig)


def sensitivity_curves(result: dict[str, Any]) -> bytes | None:
    """Accuracy vs sparsity per layer, from ``SensitivityResult.to_dict()``
    (``{"sparsities": [...], "curves": {layer: [accuracy, ...]}, "baseline": ...}``)."""
    curves = (result or {}).get("curves") or {}
    sparsities = (result or {}).get("sparsities") or []
    if not curves or not sparsities:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    xs = [100 * s for s in sparsities]
    for name, accuracies in curves.items():
        ax.plot(xs, [100 * a for a in accuracies], marker="o", ms=3, label=name)
    if result.get("baseline") is not None:
        ax.axhline(100 * result["baseline"], color="black", linestyle="--", linewidth=1, label="unpruned")
    ax.set_xlabel("sparsity of the layer (%)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("sensitivity: accuracy vs sparsity per layer", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return _png(fig)


def layer_pair_chart(
    before: list[dict[str, Any]],
    after: list[dict[str, Any]] | None,
    key: str,
    *,
    title: str,
    ylabel: str,
    scale: float = 1.0,
) -> bytes | None:
    """Per-layer bars of `key`, before (grey) next to after (blue) for layers with parameters;
    only the before bars when there is no after side."""
    after_by_name = {row.get("name"): row for row in after or []}
    rows = [
        (row["name"], row[key], (after_by_name.get(row["name"]) or {}).get(key))
        for row in before
        if row.get(key) is not None and row.get("params", 1)
    ]
    if not rows:
        return None
    plt = _pyplot()
    width = max(5.0, min(14.0, 0.45 * len(rows) + 2))
    fig, ax = plt.subplots(figsize=(width, 3.2))
    xs = list(range(len(rows)))
    half = 0.4 if after is not None else 0.8
    ax.bar(
        [x - half / 2 if after is not None else x for x in xs],
        [b * scale for _, b, _ in rows],
        width=half,
        color="#8c8c8c",
        label="before",
    )
    if after is not None:
        ax.bar(
            [x + half / 2 for x in xs],
            [(a or 0) * scale for _, _, a in rows],
            width=half,
            color="#2a7ab0",
            label="after",
        )
        ax.legend(fontsize=7)
    ax.set_xticks(xs)
    ax.set_xticklabels([n for n, _, _ in rows], rotation=60, ha="right", fontsize=7)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return _png(fig)


def kept_rows(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows ``{"name", "params", "kept"}``: the share of each layer's parameters the compression kept
    (after / before; 0 for a removed layer). Used for structured pruning, where per-layer sparsity
    stays near zero while whole channels are gone."""
    after_by_name = {row.get("name"): row for row in after}
    out = []
    for row in before:
        params = row.get("params")
        if not params:
            continue
        kept = (after_by_name.get(row.get("name")) or {}).get("params", 0)
        out.append({"name": row.get("name"), "params": params, "kept": kept / params})
    return out
