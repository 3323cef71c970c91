"""What a lottery run shows: accuracy against weights remaining for the ticket and its controls.

:func:`curve_data` turns the level records into plain JSON data; :func:`curve_png` draws it with
matplotlib; :func:`curve_table` is the rich table the command line prints; :func:`curve_html` a
self-contained page with the plot embedded, so ``report.html`` opens offline.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from typing import Any

from rich.table import Table

BRANCHES = ("ticket", "reinit", "random")
LABELS = {
    "ticket": "winning ticket (IMP, rewound)",
    "reinit": "control: random re-init, same mask",
    "random": "control: random pruning, same sparsity",
}


def curve_data(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``{"weights_remaining": [...], "ticket": [...], "reinit": [...], "random": [...], "dense": acc}``
    (accuracies in [0, 1]; None where a branch did not run at that level)."""
    out: dict[str, Any] = {"level": [r["level"] for r in records]}
    out["weights_remaining"] = [r["weights_remaining"] for r in records]
    for branch in BRANCHES:
        out[branch] = [(r.get(branch) or {}).get("accuracy") for r in records]
    out["dense"] = out["ticket"][0] if records else None
    # the dense run is the starting point of every curve
    for branch in ("reinit", "random"):
        if out[branch] and any(v is not None for v in out[branch][1:]):
            out[branch][0] = out["dense"]
    return out


def _pct(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}"


def curve_table(records: Sequence[dict[str, Any]], *, title: str = "lottery ticket") -> Table:
    """One row per level: weights remaining, ticket and control accuracies, ticket minus dense."""
    data = curve_data(records)
    table = Table(title=title)
    for header in ("level", "weights left %", "ticket %", "reinit %", "random %", "ticket - dense (pts)"):
        table.add_column(header, justify="right")
    dense = data["dense"]
    for i, level in enumerate(data["level"]):
        ticket = data["ticket"][i]
        gap = None if ticket is None or dense is None else ticket - dense
        table.add_row(
            str(level),
            _pct(data["weights_remaining"][i]),
            _pct(ticket),
            _pct(data["reinit"][i]) if i else "-",
            _pct(data["random"][i]) if i else "-",
            "-" if gap is None else f"{100 * gap:+.2f}",
        )
    return table


def render_table(records: Sequence[dict[str, Any]], *, title: str = "lottery ticket", width: int = 100) -> str:
    """:func:`curve_table` as plain text."""
    from rich.console import Console

    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(curve_table(records, title=title))
    return console.export_text()


def curve_png(records: Sequence[dict[str, Any]], *, title: str = "lottery ticket") -> bytes | None:
    """Accuracy (%) against weights remaining (%, log scale, shrinking to the right) as PNG bytes."""
    try:
        import matplotlib
        import matplotlib.ticker

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    data = curve_data(records)
    x = [100 * v for v in data["weights_remaining"]]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for branch, style in zip(BRANCHES, ("o-", "s--", "^:"), strict=True):
        points = [(xi, 100 * y) for xi, y in zip(x, data[branch], strict=True) if y is not None]
        if len(points) > 1 or (points and branch == "ticket"):
            ax.plot(*zip(*points, strict=True), style, label=LABELS[branch])
    if data["dense"] is not None:
        ax.axhline(100 * data["dense"], color="gray", linewidth=0.8, linestyle="--", label="dense")
    ax.set_xscale("log")
    ax.set_xticks([t for t in (100, 50, 20, 10, 5, 2, 1, 0.5, 0.2, 0.1) if min(x) * 0.9 <= t <= 100])
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.invert_xaxis()
    ax.set_xlabel("weights remaining (%)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def curve_html(records: Sequence[dict[str, Any]], *, title: str, png: bytes | None) -> str:
    """A small self-contained page: the plot (embedded) and the table."""
    text = html.escape(render_table(records, title=title))
    image = (
        f'<img alt="accuracy vs weights remaining" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        if png is not None
        else "<p>(matplotlib is not installed: no plot)</p>"
    )
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>\n'
        f"<body><h1>{html.escape(title)}</h1>\n{image}\n<pre>{text}</pre>\n</body></html>\n"
    )
