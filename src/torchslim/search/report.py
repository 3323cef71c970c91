"""What a search leaves: the chosen point and why, the Pareto fronts as plots, the recipe as YAML.

Files in the search's folder: ``search.json`` (every trial's record, the chosen one, the target,
the baseline), ``recipe.yaml`` (the chosen recipe with its full fine-tune: ``torchslim compress
--recipe recipe.yaml`` reruns it), ``pareto-size.png`` / ``pareto-latency.png`` /
``pareto-energy.png`` (quality against each cost; every trial, the front, the chosen point and the
bounds) and ``search.md`` (the front as a table and the reason for the choice).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torchslim.core.recipe import Recipe
from torchslim.io.atomic import atomic_path, write_json, write_text
from torchslim.search.target import Target
from torchslim.search.trial import row_key

PLOTTED = ("size", "latency", "energy")


@dataclasses.dataclass
class SearchResult:
    """The outcome of :func:`torchslim.search.search`."""

    target: Target
    baseline: dict[str, Any]
    records: list[dict[str, Any]]
    chosen: dict[str, Any] | None
    recipe: Recipe | None
    space: dict[str, Any]
    out_dir: Path
    storage: str
    study_name: str
    seconds: float
    interrupted: bool = False
    failed: int = 0
    promotions: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    drop_margin: float = 0.0
    energy: dict[str, Any] | None = None
    """What the search itself used (``RunEnergy.to_dict()``: measured where a counter exists, else estimated)."""

    @property
    def feasible(self) -> bool:
        return bool(self.chosen and self.chosen.get("feasible"))

    def why(self) -> str:
        text = explain(self.chosen, self.records, self.target)
        verified = [p for p in self.promotions if p["passed"]]
        for p in self.promotions:
            if not p["passed"]:
                text += (
                    f" Trial {p['number']} was promoted too, but after the full fine-tune it lost "
                    f"{p['drop_points']:.2f} points, over the budget."
                )
        if verified:
            text += (
                f" Verified after the full fine-tune: {verified[0]['drop_points']:.2f} points lost on the "
                "validation split "
                f"(budget {self.target.max_drop:g} less a {self.drop_margin:.2f}-point selection margin)."
            )
        elif self.chosen is not None:
            text += (
                " No candidate could be verified with the full fine-tune in the time left; chosen on its "
                "short fine-tune."
            )
        return text

    def front(self, metric: str) -> list[dict[str, Any]]:
        return pareto_front(self.records, metric)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target.to_dict(),
            "target_text": self.target.describe(),
            "baseline": self.baseline,
            "chosen": self.chosen,
            "recipe": self.recipe.to_dict() if self.recipe else None,
            "why": self.why(),
            "space": self.space,
            "storage": self.storage if self.storage.startswith("sqlite") else "(database URL not written)",
            "study_name": self.study_name,
            "seconds": self.seconds,
            "interrupted": self.interrupted,
            "failed_trials": self.failed,
            "promotions": self.promotions,
            "drop_margin": self.drop_margin,
            "trials": self.records,
            "energy": self.energy,
        }


def choose(records: Sequence[dict[str, Any]], target: Target) -> dict[str, Any] | None:
    """The preferred trial (:func:`~torchslim.search.trial.row_key`): feasible with the smallest
    primary cost, else the closest to feasible; trials stopped before fine-tuning are never chosen."""
    trained = [r for r in records if not r.get("stopped_early")]
    if not trained:
        return None
    return min(trained, key=lambda r: row_key(r, target.primary_metric))


def pareto_front(records: Sequence[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Trained trials not dominated in (higher quality, lower `metric`), by ascending cost."""
    rows = sorted(
        (r for r in records if not r.get("stopped_early")),
        key=lambda r: (r["costs"][metric], -r["quality"]),
    )
    front: list[dict[str, Any]] = []
    for row in rows:
        if not front or row["quality"] > front[-1]["quality"]:
            front.append(row)
    return front


def explain(chosen: dict[str, Any] | None, records: Sequence[dict[str, Any]], target: Target) -> str:
    """Why the chosen trial was chosen, in one paragraph."""
    if chosen is None:
        missed = [r for r in records if r.get("stopped_early")]
        if records and len(missed) == len(records):
            bounds = target.bounds()
            closest = min(missed, key=lambda r: r.get("violation", float("inf")))
            costs = ", ".join(f"{m} {closest['costs'][m]:.3f}x (bound {b:g}x)" for m, b in bounds.items())
            return (
                f"Every trial ({len(records)}) missed a cost bound before fine-tuning, so nothing could be chosen; "
                f"the closest: {costs}. The space cannot reach {target.describe()} on this runtime; "
                "loosen the bound, or allow what the space left out (pruning needs a labelled task)."
            )
        return "No trial finished its fine-tuning, so nothing could be chosen; the search needs more time or trials."
    primary = target.primary_metric
    feasible = [r for r in records if r.get("feasible")]
    costs = chosen["costs"]
    if chosen.get("promoted"):
        head = (
            f"Trial {chosen.get('number')} is the one with the smallest {primary} whose cost meets the target "
            f"({target.describe()}) and whose accuracy was verified after the full fine-tune (below)"
        )
    elif chosen.get("feasible"):
        head = (
            f"Trial {chosen.get('number')} meets the target ({target.describe()}) with the smallest {primary} "
            f"among the {len(feasible)} trial(s) that meet it"
        )
    else:
        head = f"No trial met the target ({target.describe()}); trial {chosen.get('number')} is the closest"
    return (
        f"{head}: {1 / costs['size']:.1f}x smaller on disk, latency {costs['latency']:.3f}x, energy "
        f"{costs['energy']:.3f}x, MACs {costs['macs']:.3f}x of fp32, quality drop {chosen['drop_points']:.2f} points "
        f"after its short fine-tune ({chosen.get('steps', 0)} steps); {len(records)} trials in all, "
        f"{sum(1 for r in records if r.get('stopped_early'))} stopped before fine-tuning because their cost "
        "could not meet the bounds."
    )


def plot_front(result: SearchResult, metric: str, path: Path) -> Path | None:
    """Quality against `metric` (fraction of fp32): every trial, the front, the chosen point, the bounds."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = [r for r in result.records if not r.get("stopped_early")]
    if not rows:
        return None
    scale = 100.0 if result.baseline.get("metric") == "accuracy" else 1.0
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    try:
        ax.scatter(
            [r["costs"][metric] for r in rows], [scale * r["quality"] for r in rows], s=14, c="0.6", label="trials"
        )
        front = pareto_front(rows, metric)
        ax.plot(
            [r["costs"][metric] for r in front],
            [scale * r["quality"] for r in front],
            "o-",
            c="tab:blue",
            label="Pareto front",
        )
        if result.chosen is not None:
            ax.scatter(
                [result.chosen["costs"][metric]],
                [scale * result.chosen["quality"]],
                marker="*",
                s=180,
                c="tab:red",
                label="chosen",
                zorder=5,
            )
        bound = result.target.bounds().get(metric)
        if bound is not None:
            ax.axvline(bound, color="tab:red", linestyle=":", linewidth=1, label=f"{metric} bound")
        floor = scale * result.baseline["quality"] - (result.target.max_drop if scale == 100.0 else 0.0)
        ax.axhline(floor, color="black", linestyle="--", linewidth=1, label="quality floor")
        ax.set_xscale("log")
        ax.set_xlabel(f"{metric} (fraction of fp32, log scale)")
        ax.set_ylabel("accuracy (%)" if scale == 100.0 else "cosine to the original")
        ax.set_title(f"Search: quality vs {metric}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return path


def markdown(result: SearchResult) -> str:
    """``search.md``: the target, why the chosen point, the size front."""
    lines = [f"# Search: {result.target.describe()}", "", result.why(), ""]
    runtime = result.baseline.get("latency_runtime")
    if runtime and result.baseline.get("latency_ms") is not None:
        lines += [
            f"Latency is a fraction of the fp32 model's on {runtime}: {result.baseline['latency_ms']:.2f} ms.",
            "",
        ]
    if result.energy is not None:
        e = result.energy
        lines += [f"Energy of this search: {e['joules']:,.1f} J ({e['grams_co2e']:.3g} gCO2e), {e['label']}.", ""]
    lines += ["| trial | quality | drop (pts) | size (x smaller) | latency | energy | MACs | steps | distill |"]
    lines += ["|---|---|---|---|---|---|---|---|---|"]
    for r in result.front(result.target.primary_metric):
        c = r["costs"]
        lines.append(
            f"| {r.get('number')} | {r['quality']:.4f} | {r['drop_points']:.2f} | {1 / c['size']:.1f} | "
            f"{c['latency']:.3f} | {c['energy']:.3f} | {c['macs']:.3f} | {r.get('steps')} | "
            f"{r['params'].get('distill')} |"
        )
    if result.recipe is not None:
        lines += ["", "Chosen recipe (`torchslim compress MODEL --recipe recipe.yaml` reruns it):", "", "```yaml"]
        lines += [result.recipe.to_yaml().rstrip(), "```"]
    return "\n".join(lines) + "\n"


def write_report(result: SearchResult) -> dict[str, Path]:
    """Write search.json, search.md, recipe.yaml and the Pareto plots into the search folder."""
    out = result.out_dir
    paths = {"json": out / "search.json", "markdown": out / "search.md"}
    write_json(paths["json"], result.to_dict())
    write_text(paths["markdown"], markdown(result))
    if result.recipe is not None:
        header = f"# Chosen by torchslim search for: {result.target.describe()}\n# {result.why()}\n"
        paths["recipe"] = out / "recipe.yaml"
        write_text(paths["recipe"], header + result.recipe.to_yaml())
    for metric in PLOTTED:
        plotted = plot_front(result, metric, out / f"pareto-{metric}.png")
        if plotted is not None:
            paths[f"pareto-{metric}"] = plotted
    return paths
