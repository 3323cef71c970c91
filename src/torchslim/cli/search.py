"""`torchslim search` and `compress --target`: a target in, the chosen recipe (and its model) out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from torchslim.cli.inspect import set_threads
from torchslim.cli.options import (
    DataRequiredOpt,
    DataRootOpt,
    EvalSamplesOpt,
    ModelArg,
    NumClassesOpt,
    ThreadsOpt,
    TrainSamplesOpt,
    WeightsOpt,
)
from torchslim.core.errors import ConfigError

TARGET_HELP = (
    "What to reach, relative to the fp32 model measured in the same run: size=15x (times smaller on disk), "
    "latency=0.3x (of fp32 on the deployment runtime), energy=0.1x, macs=0.2x; comma-separated to combine; "
    "max_drop=1 (accuracy points) and min_cosine=0.99 (embedding models) may be added."
)
TargetOpt = typer.Option(None, "--target", help=TARGET_HELP + " Instead of --recipe: the search chooses it.")
BudgetOpt = typer.Option(
    "10m", "--budget", help="With --target: the search's budget, minutes ('10m') or trials ('30')."
)

SearchOutOpt = typer.Option(Path("runs/search"), "--out", help="Folder of the study, best model, plots, recipe.")


def parse_budget(text: str) -> tuple[int | None, float | None]:
    """``10m`` -> (None, 10.0) minutes; ``30`` -> (30, None) trials. Errors name ``--budget``."""
    raw = text.strip().lower()
    try:
        if raw.endswith("m"):
            minutes = float(raw[:-1])
            if minutes > 0:
                return None, minutes
        elif int(raw) >= 1:
            return int(raw), None
    except ValueError:
        pass
    raise ConfigError(f"--budget {text!r} must be minutes ('10m') or a number of trials ('30').")


def plan_for_target(
    net: Any,
    splits: Any,
    *,
    target: str,
    budget: str,
    max_drop: float,
    out: Path,
    seed: int,
    quiet: bool,
) -> tuple[Any, float]:
    """The search behind ``compress --target``: its files go to ``<out>-search`` (it resumes from
    there); returns the chosen recipe, which compress then runs with its full fine-tune, and the
    accuracy budget as the fraction compress's report checks."""
    from torchslim.search import SearchOptions, parse_target, search
    from torchslim.search.target import drop_points_from_cli

    goal = parse_target(target, max_drop=drop_points_from_cli(max_drop))
    trials, minutes = parse_budget(budget)
    folder = out.parent / f"{out.name}-search"
    result = search(
        net,
        splits,
        target=goal,
        out_dir=folder,
        options=SearchOptions(trials=trials, minutes=minutes, seed=seed, quiet=quiet),
    )
    if not quiet:
        typer.echo(result.why())
        typer.echo(f"search: {folder} (recipe.yaml, search.md, pareto-*.png)")
    if result.recipe is None:
        raise ConfigError(f"The search for {goal.describe()} finished no trial: {result.why()}")
    return result.recipe, goal.max_drop / 100.0


def search_command(
    model: str = ModelArg,
    data: str = DataRequiredOpt,
    target: str = typer.Option(..., "--target", help=TARGET_HELP),
    max_drop: float = typer.Option(
        1.0, "--max-drop", min=0.0, help="Accuracy points the model may lose (1 = one point; 0.01 = one point too)."
    ),
    out: Path = SearchOutOpt,
    trials: int | None = typer.Option(None, "--trials", min=1, help="Total trials of the study (over resumes)."),
    minutes: float | None = typer.Option(None, "--minutes", min=0.1, help="This run's time budget."),
    storage: str | None = typer.Option(
        None, "--storage", help="Database URL shared by workers (postgresql://...); default: SQLite in --out."
    ),
    study_name: str | None = typer.Option(None, "--study-name", help="Name of the study in the storage."),
    sampler: str = typer.Option("tpe", "--sampler", help="tpe, nsga2 or random."),
    latency_batch: int = typer.Option(1, "--latency-batch", min=1, help="Batch size latency is measured at."),
    latency_baseline: str = typer.Option(
        "runtime",
        "--latency-baseline",
        help="What a latency target is a fraction of: runtime (fp32 on the same runtime) or pytorch-eager.",
    ),
    final: bool = typer.Option(True, "--final/--no-final", help="Run the chosen recipe with its full fine-tune."),
    weights: str | None = WeightsOpt,
    data_root: str | None = DataRootOpt,
    train_samples: int | None = TrainSamplesOpt,
    eval_samples: int | None = EvalSamplesOpt,
    num_classes: int | None = NumClassesOpt,
    threads: int | None = ThreadsOpt,
    seed: int = typer.Option(0, "--seed"),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    # long: one parameter line per CLI option (typer reads the options from the signature)
    """Search recipes that meet --target; keep the best model after every trial; a rerun resumes.

    Writes into --out: study.db, best/ (the best model so far), recipe.yaml (rerun it with
    `torchslim compress --recipe`), search.md, pareto-*.png; with --final, final/ (the chosen recipe
    with its full fine-tune, through compress).
    """
    from torchslim.cli.resolve import resolve_data, resolve_model
    from torchslim.cli.run import compress_and_save
    from torchslim.search import SearchOptions, parse_target, search
    from torchslim.search.target import drop_points_from_cli

    goal = parse_target(target, max_drop=drop_points_from_cli(max_drop))
    if trials is None and minutes is None:
        raise ConfigError("torchslim search needs a budget: --trials N and/or --minutes M.")
    set_threads(threads)
    net = resolve_model(model, weights=weights, num_classes=num_classes, seed=seed)
    common: dict[str, Any] = {"train_samples": train_samples, "eval_samples": eval_samples, "seed": seed}
    splits = resolve_data(data, batch_size=128, root=data_root, model=net, needs_train=True, **common)
    options = SearchOptions(
        trials=trials,
        minutes=minutes,
        storage=storage,
        study_name=study_name,
        sampler=sampler,
        latency_batch=latency_batch,
        latency_threads=threads or 1,
        latency_baseline=latency_baseline,
        seed=seed,
        quiet=quiet,
    )
    result = search(net, splits, target=goal, out_dir=out, options=options)
    typer.echo(result.why())
    typer.echo(f"search folder: {out} (best/, recipe.yaml, search.md, pareto-*.png)")
    if final and result.recipe is not None:
        compress_and_save(
            model,
            result.recipe,
            data=data,
            weights=weights,
            num_classes=num_classes,
            train_batch_size=128,
            data_root=data_root,
            threads=threads,
            batch_size=latency_batch,
            quiet=quiet,
            as_json=False,
            out=out / "final",
            max_drop=goal.max_drop / 100.0,
            **common,
        )
