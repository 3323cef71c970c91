"""What `compress` and `distill` share: check the output, resolve MODEL and the data, run a plan, save, print."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import typer

from torchslim.core.recipe import Recipe


def echo_json(obj: object) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


GridIntensityOpt = typer.Option(
    None,
    "--grid-intensity",
    min=0.0,
    help="gCO2e per kWh of the electricity, for the run's emissions (default 475: world average, IEA 2019).",
)


def run_dir_for(out: Path) -> Path:
    """The folder of resumable checkpoints of the run that writes `out` (deleted once `out` is saved)."""
    return out.parent / f".{out.name}.run"


def compress_and_save(
    model: str,
    plan: Recipe | None,
    *,
    data: str,
    weights: str | None,
    num_classes: int | None,
    train_batch_size: int,
    train_samples: int | None,
    eval_samples: int | None,
    seed: int,
    data_root: str | None,
    threads: int | None,
    batch_size: int,
    quiet: bool,
    as_json: bool,
    out: Path,
    force: bool = False,
    preprocess: str | None = None,
    max_drop: float = 0.02,
    strict: bool = False,
    grid_intensity: float | None = None,
    target: str | None = None,
    budget: str = "10m",
) -> None:
    # long: one keyword per CLI option it passes on (20 of the 76 lines); the body is ~40 lines
    """What `compress` and `distill` share: resolve MODEL and the data, run `plan`, save, print.

    `out` is checked before any work; the recipe's training steps checkpoint under
    :func:`run_dir_for` so a killed run resumes, and that folder goes once the artifact is saved.
    """
    from torchslim.api import compress as compress_model
    from torchslim.cli.resolve import ALLOW_NONFINITE, resolve_data, resolve_model
    from torchslim.cli.search import plan_for_target
    from torchslim.io.outputs import check_output_dir, clean_leftovers
    from torchslim.train.distributed import is_main_process

    writes = is_main_process()  # under torchrun (--nproc) only rank 0 checks, writes and prints the artifact
    if writes:
        check_output_dir(out, overwrite=force)
        clean_leftovers(out)
    net = resolve_model(model, weights=weights, num_classes=num_classes, seed=seed)
    splits = resolve_data(
        data,
        batch_size=train_batch_size,
        train_samples=train_samples,
        eval_samples=eval_samples,
        seed=seed,
        root=data_root,
        model=net,
        preprocess=preprocess,
        needs_train=plan is None or recipe_trains(plan),
    )
    if plan is None:  # --target: the search chooses the recipe (torchslim.cli.search)
        plan, max_drop = plan_for_target(
            net, splits, target=str(target), budget=budget, max_drop=max_drop, out=out, seed=seed, quiet=quiet
        )
    result = compress_model(
        net,
        splits,
        recipe=plan,
        seed=seed,
        threads=threads,
        batch_size=batch_size,
        quiet=quiet or as_json,
        model_name=model,
        run_dir=run_dir_for(out),
        max_drop=max_drop,
        allow_nonfinite=ALLOW_NONFINITE.get(),
        grid_intensity=grid_intensity,
    )
    if not writes:
        return
    result.save(out)
    shutil.rmtree(run_dir_for(out), ignore_errors=True)
    if as_json:
        echo_json(result.report.to_dict())
    else:
        typer.echo(result.report.render())
        typer.echo(f"artifact: {out}")
        typer.echo(f"HTML report: {out / 'report.html'}")
    warnings = result.report.warnings()
    if strict and warnings:
        typer.echo(f"--strict: the report has {len(warnings)} warning(s)", err=True)
        raise typer.Exit(3)


def recipe_trains(plan: Recipe) -> bool:
    """True when a step of `plan` trains (its ``train:`` section runs at least one epoch or step)."""
    for step in plan.steps:
        train = getattr(step.config, "train", None)
        if train is not None and (train.epochs > 0 or (train.max_steps or 0) > 0):
            if getattr(step.config, "mode", "qat") == "qat":  # a PTQ quantize step keeps an unused train:
                return True
    return False
