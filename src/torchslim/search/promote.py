"""The chosen point: candidates promoted to the full fine-tune, smallest first, until one is verified.

A trial judges a recipe after a short fine-tune, which understates what the full one recovers. So the
trials whose cost meets every bound and whose short-fine-tune drop is within `slack` points of the
budget are candidates; in order of their primary cost (smallest first) each gets the chosen point's
full fine-tune and is measured again on the validation split. The first whose drop is within the
budget (less the selection margin) is the chosen point; its model replaces ``best/``. When no
candidate passes in the time left, the preferred trial (feasible after its short fine-tune, see
:func:`~torchslim.search.report.choose`) is chosen without this check, and the report says so.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torchslim.io import save
from torchslim.io.atomic import write_json
from torchslim.search.report import choose
from torchslim.search.space import SearchSpace
from torchslim.search.target import Target
from torchslim.search.trial import TrialRunner, apply_steps


def candidates(records: Sequence[dict[str, Any]], target: Target, slack: float) -> list[dict[str, Any]]:
    """Trained trials meeting every cost bound, within `slack` points of the drop budget, by
    ascending primary cost (ties: the smaller drop first)."""
    primary = target.primary_metric
    pool = [
        r
        for r in records
        if not r.get("stopped_early")
        and all(v <= 0 for v in r["constraints"][1:])
        and r["drop_points"] <= target.max_drop + slack
    ]
    return sorted(pool, key=lambda r: (r["costs"][primary], r["drop_points"]))


def promote(
    runner: TrialRunner,
    space: SearchSpace,
    records: Sequence[dict[str, Any]],
    *,
    target: Target,
    train: dict[str, Any] | None,
    final_steps: int | None,
    deadline: float,
    margin: float,
    slack: float,
    out: Path,
    max_candidates: int = 3,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(the chosen record, the promotions tried); see the module docstring. A candidate is promoted
    only when twice its expected time (its trial's seconds scaled to `final_steps`: the promotion,
    then compress's rerun of the chosen recipe) fits before `deadline`."""
    tried: list[dict[str, Any]] = []
    for record in candidates(records, target, slack)[:max_candidates]:
        scale = max(1.0, (final_steps or 0) / max(int(record.get("steps") or 0), 1))
        if clock() + 2 * scale * float(record.get("seconds", 0.0)) > deadline:
            continue
        started = clock()
        recipe = space.recipe(record["params"], train=train)
        model = apply_steps(copy.deepcopy(runner.original), recipe.steps, runner.context)
        drop = (runner.baseline_quality - runner.quality(model)) * 100.0
        passed = drop <= target.max_drop - margin
        tried.append(
            {"number": record.get("number"), "drop_points": drop, "passed": passed, "seconds": clock() - started}
        )
        if passed:
            chosen = record | {"promoted": True, "final_drop_points": drop}
            save(model, out / "best", config={"recipe": recipe.to_dict(), "search": chosen})
            write_json(out / "best.json", chosen | {"recipe": recipe.to_dict()})
            return chosen, tried
    fallback = choose(records, target)
    return (fallback | {"promoted": False} if fallback else None), tried
