"""The `torchslim` command line: a thin layer over the Python API (typer + rich)."""

from __future__ import annotations

from pathlib import Path

import typer

from torchslim.cli.boundary import run_with_boundary
from torchslim.cli.deploy import deploy_command
from torchslim.cli.inspect import analyze, export, list_all, set_threads, show_report
from torchslim.cli.lottery import lottery_command
from torchslim.cli.options import (
    AllowNonfiniteOpt,
    CheckpointEveryOpt,
    CompressOutOpt,
    DataRequiredOpt,
    DataRootOpt,
    DemoOutOpt,
    DistillOutOpt,
    EvalSamplesOpt,
    FeaturesOpt,
    ForceOpt,
    LatencyBatchOpt,
    MaxDropOpt,
    ModelArg,
    NumClassesOpt,
    OverridesOpt,
    PreprocessOpt,
    StrictOpt,
    ThreadsOpt,
    TrainBatchOpt,
    TrainOutOpt,
    TrainSamplesOpt,
    WeightsOpt,
)
from torchslim.cli.run import GridIntensityOpt, compress_and_save, echo_json
from torchslim.cli.search import BudgetOpt, TargetOpt, search_command
from torchslim.core.errors import UsageError
from torchslim.core.recipe import Recipe

app = typer.Typer(
    name="torchslim",
    help="Make trained PyTorch models really smaller, faster and cheaper in energy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


app.command()(analyze)


@app.command()
def train(
    model: str = ModelArg,
    data: str = DataRequiredOpt,
    data_root: str | None = DataRootOpt,
    epochs: int = typer.Option(1, "--epochs", min=0),
    out: Path = TrainOutOpt,
    force: bool = ForceOpt,
    lr: float = typer.Option(1e-3, "--lr"),
    batch_size: int = TrainBatchOpt,
    seed: int = typer.Option(0, "--seed"),
    weights: str | None = WeightsOpt,
    train_samples: int | None = TrainSamplesOpt,
    eval_samples: int | None = EvalSamplesOpt,
    threads: int | None = ThreadsOpt,
    num_classes: int | None = NumClassesOpt,
    checkpoint_every: int | None = CheckpointEveryOpt,
    grid_intensity: float | None = GridIntensityOpt,
    as_json: bool = typer.Option(False, "--json"),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    # long: one parameter line per CLI option (typer reads the options from the signature)
    """Train a model on a dataset and save it as an artifact (a killed run resumes when rerun)."""
    from torchslim.cli.train import train_and_save

    set_threads(threads)
    report = train_and_save(
        model,
        data=data,
        data_root=data_root,
        epochs=epochs,
        out=out,
        force=force,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        weights=weights,
        train_samples=train_samples,
        eval_samples=eval_samples,
        threads=threads,
        num_classes=num_classes,
        checkpoint_every=checkpoint_every,
        grid_intensity=grid_intensity,
        quiet=quiet or as_json,
    )
    if as_json:
        echo_json(report.to_dict())
    else:
        typer.echo(report.render())
        typer.echo(f"artifact: {out}")


@app.command()
def compress(
    model: str = ModelArg,
    data: str = DataRequiredOpt,
    recipe: str | None = typer.Option(None, "--recipe", help="A recipe YAML file or a shipped recipe name."),
    target: str | None = TargetOpt,
    budget: str = BudgetOpt,
    data_root: str | None = DataRootOpt,
    out: Path = CompressOutOpt,
    force: bool = ForceOpt,
    overrides: list[str] = OverridesOpt,
    weights: str | None = WeightsOpt,
    batch_size: int = LatencyBatchOpt,
    train_batch_size: int = TrainBatchOpt,
    seed: int = typer.Option(0, "--seed"),
    train_samples: int | None = TrainSamplesOpt,
    eval_samples: int | None = EvalSamplesOpt,
    threads: int | None = ThreadsOpt,
    num_classes: int | None = NumClassesOpt,
    as_json: bool = typer.Option(False, "--json", help="Print report.json."),
    quiet: bool = typer.Option(False, "--quiet"),
    preprocess: str | None = PreprocessOpt,
    max_drop: float = MaxDropOpt,
    strict: bool = StrictOpt,
    grid_intensity: float | None = GridIntensityOpt,
    nproc: int = typer.Option(1, "--nproc", min=1, help="Run in N processes under torchrun (DDP, same global batch)."),
) -> None:
    # long: one parameter line per CLI option (typer reads the options from the signature)
    """Measure, run a recipe, measure again; write the artifact, report.json and report.html."""
    from torchslim.api import load_recipe
    from torchslim.core.recipe import apply_overrides

    set_threads(threads)
    if (recipe is None) == (target is None):
        raise UsageError("compress needs exactly one of --recipe and --target.")
    plan = load_recipe(recipe) if recipe is not None else None
    if overrides and plan is not None:
        plan = Recipe.from_dict(apply_overrides(plan.to_dict(), overrides))
    compress_and_save(
        model,
        plan,
        data=data,
        weights=weights,
        num_classes=num_classes,
        train_batch_size=train_batch_size,
        train_samples=train_samples,
        eval_samples=eval_samples,
        seed=seed,
        data_root=data_root,
        threads=threads,
        batch_size=batch_size,
        quiet=quiet,
        as_json=as_json,
        out=out,
        force=force,
        preprocess=preprocess,
        max_drop=max_drop,
        strict=strict,
        grid_intensity=grid_intensity,
        target=target,
        budget=budget,
    )


@app.command()
def distill(
    teacher: str = ModelArg,
    student: str = typer.Option(
        ..., "--student", help="Student spec: depth:K, layers:N, width:R, a built-in model name or a JSON model spec."
    ),
    data: str = DataRequiredOpt,
    out: Path = DistillOutOpt,
    force: bool = ForceOpt,
    data_root: str | None = DataRootOpt,
    epochs: int = typer.Option(1, "--epochs", min=0),
    lr: float = typer.Option(1e-3, "--lr"),
    optimizer: str = typer.Option("adam", "--optimizer", help="adam, adamw or sgd."),
    max_steps: int | None = typer.Option(None, "--max-steps", min=1),
    temperature: float | None = typer.Option(
        None, "--temperature", help="Softmax temperature T > 0 (unset: chosen by a probe on the validation split)."
    ),
    alpha: float | None = typer.Option(
        None, "--alpha", help="Weight of the soft targets in [0, 1] (unset: chosen by a probe on the validation split)."
    ),
    features: list[str] = FeaturesOpt,
    feature_loss: str = typer.Option(
        "hint", "--feature-loss", help="hint, attention, hidden_mse, attention_map or cosine."
    ),
    feature_weight: float = typer.Option(1.0, "--feature-weight"),
    weights: str | None = WeightsOpt,
    batch_size: int = LatencyBatchOpt,
    train_batch_size: int = TrainBatchOpt,
    seed: int = typer.Option(0, "--seed"),
    train_samples: int | None = TrainSamplesOpt,
    eval_samples: int | None = EvalSamplesOpt,
    threads: int | None = ThreadsOpt,
    num_classes: int | None = NumClassesOpt,
    as_json: bool = typer.Option(False, "--json", help="Print report.json."),
    quiet: bool = typer.Option(False, "--quiet"),
    preprocess: str | None = PreprocessOpt,
    max_drop: float = MaxDropOpt,
    strict: bool = StrictOpt,
    grid_intensity: float | None = GridIntensityOpt,
) -> None:
    # long: one parameter line per CLI option (typer reads the options from the signature)
    """Distil TEACHER into a student (KD + optional feature hints); report teacher vs student, save the student."""
    from torchslim.distillation.cli import distill_recipe

    set_threads(threads)
    plan = distill_recipe(
        student=student,
        epochs=epochs,
        lr=lr,
        optimizer=optimizer,
        max_steps=max_steps,
        temperature=temperature,
        alpha=alpha,
        features=features,
        feature_loss=feature_loss,
        feature_weight=feature_weight,
    )
    compress_and_save(
        teacher,
        plan,
        data=data,
        weights=weights,
        num_classes=num_classes,
        train_batch_size=train_batch_size,
        train_samples=train_samples,
        eval_samples=eval_samples,
        seed=seed,
        data_root=data_root,
        threads=threads,
        batch_size=batch_size,
        quiet=quiet,
        as_json=as_json,
        out=out,
        force=force,
        preprocess=preprocess,
        max_drop=max_drop,
        strict=strict,
        grid_intensity=grid_intensity,
    )


app.command()(export)

app.command("deploy")(deploy_command)
app.command("search")(search_command)
app.command("lottery")(lottery_command)


app.command("report")(show_report)
app.command("list")(list_all)


@app.command()
def demo(
    out: Path = DemoOutOpt,
    as_json: bool = typer.Option(False, "--json"),
    threads: int | None = ThreadsOpt,
    train_samples: int | None = TrainSamplesOpt,
    eval_samples: int | None = EvalSamplesOpt,
    epochs: int = typer.Option(2, "--epochs", min=1, help="Epochs of baseline training."),
    distill_epochs: int = typer.Option(1, "--distill-epochs", min=0, help="Epochs of distillation after pruning."),
    quiet: bool = typer.Option(False, "--quiet"),
    grid_intensity: float | None = GridIntensityOpt,
) -> None:
    """The main job end to end: train fmnist-cnn on Fashion-MNIST, then prune + distill + int8 it."""
    from torchslim.demo import run_demo
    from torchslim.io.outputs import check_output_file

    check_output_file(out / "report.html", param="--out")
    set_threads(threads)
    report = run_demo(
        out=out,
        threads=threads,
        train_samples=train_samples,
        eval_samples=eval_samples,
        epochs=epochs,
        distill_epochs=distill_epochs,
        grid_intensity=grid_intensity,
        quiet=as_json or quiet,
    )
    if as_json:
        echo_json(report.to_dict())
    else:
        typer.echo(report.render())
        typer.echo(f"artifacts: {out}")
        typer.echo(f"HTML report: {out / 'report.html'}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: every user error becomes one line on stderr and exit code 2 (:mod:`torchslim.cli.boundary`)."""
    import sys

    from torchslim.cli.options import RENAMED_FLAGS
    from torchslim.cli.resolve import ALLOW_NONFINITE
    from torchslim.train.distributed import launch_torchrun, nproc_requested, under_launcher

    args = list(sys.argv[1:] if argv is None else argv)
    nproc = nproc_requested(args) if args[:1] == ["compress"] else None
    if nproc is not None and nproc > 1 and not under_launcher():  # the same command in N processes
        raise SystemExit(launch_torchrun(args, nproc))
    for flag, message in RENAMED_FLAGS.items():
        if any(a == flag or a.startswith(flag + "=") for a in args):
            typer.echo(f"Error: {message}", err=True)
            raise SystemExit(2)
    token = ALLOW_NONFINITE.set("--allow-nonfinite" in args)
    try:
        run_with_boundary(app, [a for a in args if a != "--allow-nonfinite"])
    finally:
        ALLOW_NONFINITE.reset(token)


@app.callback()
def _global_options(
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of an error (anywhere on the line)."),
    allow_nonfinite: bool = AllowNonfiniteOpt,
) -> None:
    # both flags are taken off the command line by main() wherever they stand; declared here for --help
    del debug, allow_nonfinite
