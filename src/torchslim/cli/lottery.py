"""`torchslim lottery`: find a lottery ticket (iterative magnitude pruning with rewinding) and its controls.

The run directory ``--out`` holds every level as it completes; rerunning the same command resumes
at the first unfinished level. At the end it holds ``lottery.json`` (accuracy against weights
remaining for the ticket and the controls), ``lottery.png``, ``report.html`` and the ticket as a
sparse artifact ``ticket/`` that ``torchslim compress OUT/ticket --recipe int8`` takes as input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

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
from torchslim.cli.run import GridIntensityOpt, echo_json

LotteryOutOpt = typer.Option(..., "--out", help="Run directory: levels, curves, plot, report.html, ticket/.")
ControlsOpt = typer.Option(
    "reinit,random", "--controls", help="Control branches per level, comma-separated (reinit, random) or 'none'."
)


def _controls(text: str) -> list[str]:
    words = [w.strip() for w in text.split(",") if w.strip()]
    return [] if words == ["none"] else words


def lottery_command(
    model: str = ModelArg,
    data: str = DataRequiredOpt,
    levels: int = typer.Option(5, "--levels", min=1, help="Pruning levels after the dense run."),
    rate: float = typer.Option(0.2, "--rate", help="Fraction of the remaining weights pruned per level."),
    rewind: str = typer.Option("0", "--rewind", help="Rewind point: 0 (init), <k>it (steps) or <e>ep (epochs)."),
    out: Path = LotteryOutOpt,
    scope: str = typer.Option("layer", "--scope", help="layer (each layer alike) or global (one threshold)."),
    output_rate: float | None = typer.Option(None, "--output-rate", help="Output layer's rate (default rate/2)."),
    controls: str = ControlsOpt,
    epochs: int = typer.Option(1, "--epochs", min=1, help="Epochs of the dense run (T); levels train T - k."),
    max_steps: int | None = typer.Option(None, "--max-steps", min=1, help="Cap on the dense run's steps."),
    lr: float = typer.Option(1.2e-3, "--lr"),
    optimizer: str = typer.Option("adam", "--optimizer", help="adam, adamw or sgd."),
    train_batch_size: int = typer.Option(128, "--train-batch-size", min=1, help="Training (and evaluation) batch."),
    seed: int = typer.Option(0, "--seed"),
    data_root: str | None = DataRootOpt,
    weights: str | None = WeightsOpt,
    num_classes: int | None = NumClassesOpt,
    train_samples: int | None = TrainSamplesOpt,
    eval_samples: int | None = EvalSamplesOpt,
    threads: int | None = ThreadsOpt,
    as_json: bool = typer.Option(False, "--json", help="Print lottery.json."),
    quiet: bool = typer.Option(False, "--quiet"),
    grid_intensity: float | None = GridIntensityOpt,
) -> None:
    # long: one parameter line per CLI option (typer reads the options from the signature)
    """Iterative magnitude pruning with rewinding: the ticket and its controls per level, the ticket saved."""
    from torchslim.cli.inspect import set_threads
    from torchslim.cli.resolve import resolve_data, resolve_model
    from torchslim.io.outputs import check_output_dir
    from torchslim.lottery import lottery
    from torchslim.lottery.store import EXPERIMENT_FILE

    if not (out / EXPERIMENT_FILE).is_file():  # a lottery run there is resumed (its settings are checked)
        check_output_dir(out)
    set_threads(threads)
    net = resolve_model(model, weights=weights, num_classes=num_classes, seed=seed)
    splits = resolve_data(
        data,
        batch_size=train_batch_size,
        train_samples=train_samples,
        eval_samples=eval_samples,
        seed=seed,
        root=data_root,
        model=net,
        needs_train=True,
    )
    train: dict[str, Any] = {"epochs": epochs, "lr": lr, "optimizer": optimizer, "max_steps": max_steps}

    def progress(record: dict[str, Any]) -> None:
        if not (quiet or as_json):
            accuracies = ", ".join(
                f"{branch} {100 * record[branch]['accuracy']:.2f}%"
                for branch in ("ticket", "reinit", "random")
                if branch in record
            )
            typer.echo(f"level {record['level']}: {100 * record['weights_remaining']:.2f}% weights left: {accuracies}")

    result = lottery(
        net,
        splits,
        levels=levels,
        rate=rate,
        rewind=rewind,
        scope=scope,
        output_rate=output_rate,
        controls=_controls(controls),
        train=train,
        seed=seed,
        out=out,
        threads=threads,
        on_level=progress,
        grid_intensity=grid_intensity,
    )
    if as_json:
        echo_json(result.to_dict())
        return
    typer.echo(result.render())
    if result.loaded_levels:
        typer.echo(f"resumed: levels {result.loaded_levels} read back from {out}")
    typer.echo(f"curves: {out / 'lottery.json'}, plot: {out / 'lottery.png'}, report: {out / 'report.html'}")
    typer.echo(f"ticket artifact: {out / 'ticket'} (e.g. torchslim compress {out / 'ticket'} --recipe int8 ...)")
