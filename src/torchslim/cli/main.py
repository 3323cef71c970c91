"""The `torchslim` command line: a thin layer over the Python API (typer + rich)."""

from __future__ import annotations

from pathlib import Path

import typer

from torchslim.cli.boundary import run_with_boundary
from torchslim.cli.deploy import deploy_command
from torchslim.cli.lottery import lottery_command
from torchslim.cli.options import (
    AllowNonfiniteOpt,
    CheckpointEveryOpt,
    CompressOutOpt,
    DataOpt,
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
    OnnxOpt,
    OverridesOpt,
    PreprocessOpt,
    ReportDirArg,
    SensitivityOutOpt,
    StrictOpt,
    ThreadsOpt,
    TrainBatchOpt,
    TrainOutOpt,
    TrainSamplesOpt,
    WeightsOpt,
)
from torchslim.cli.run import compress_and_save, echo_json
from torchslim.core.config import TechniqueConfig
from torchslim.core.recipe import Recipe

app = typer.Typer(
    name="torchslim",
    help="Make trained PyTorch models really smaller, faster and cheaper in energy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _technique_summary(config_type: type[TechniqueConfig] | None) -> str:
    """A technique config's one-line summary: its ``summary``, else its docstring's first line."""
    if config_type is None:
        return ""
    if config_type.summary:
        return config_type.summary
    lines = (config_type.__doc__ or "").strip().splitlines()
    return lines[0] if lines else ""


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


@app.command()
def analyze(
    model: str = ModelArg,
    weights: str | None = WeightsOpt,
    data: str | None = DataOpt,
    data_root: str | None = DataRootOpt,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    batch_size: int = LatencyBatchOpt,
    train_samples: int | None = TrainSamplesOpt,
    eval_samples: int | None = EvalSamplesOpt,
    threads: int | None = ThreadsOpt,
    num_classes: int | None = NumClassesOpt,
    repeats: int = typer.Option(20, "--repeats", min=1, help="Latency repeats (median)."),
    sensitivity: bool = typer.Option(
        False, "--sensitivity", help="Per-layer accuracy vs sparsity curves (needs --data)."
    ),
    sparsities: str = typer.Option(
        "0.25,0.5,0.75,0.9", "--sparsities", help="Sparsities for --sensitivity, comma-separated."
    ),
    out: Path | None = SensitivityOutOpt,
) -> None:
    # long: one parameter line per CLI option, outputs and option values checked before the model is built
    """Params, non-zeros, MACs, bytes on disk, latency, energy and (with --data) accuracy."""
    from torchslim.api import analyze as analyze_model
    from torchslim.cli.resolve import ALLOW_NONFINITE, resolve_data, resolve_model
    from torchslim.core.errors import ConfigError
    from torchslim.io.outputs import check_output_file
    from torchslim.report import Report

    if sensitivity and data is None:
        raise ConfigError("--sensitivity needs --data (the curves are accuracies).")
    try:
        levels = [float(v) for v in sparsities.split(",") if v.strip()]
    except ValueError as exc:
        raise ConfigError(f"--sparsities {sparsities!r} must be comma-separated numbers in [0, 1).") from exc
    if sensitivity:
        check_output_file((out or Path("runs") / "analyze" / Path(model).name) / "report.html", param="--out")
    _set_threads(threads)
    net = resolve_model(model, weights=weights, num_classes=num_classes)
    splits = resolve_data(
        data,
        batch_size=128,
        train_samples=train_samples,
        eval_samples=eval_samples,
        seed=0,
        root=data_root,
        model=net,
    )
    stats = analyze_model(
        net, splits, batch_size=batch_size, threads=threads, repeats=repeats, allow_nonfinite=ALLOW_NONFINITE.get()
    ).to_dict()
    report = Report(model=model, before=stats, dataset=data)
    if sensitivity:
        from torchslim.pruning import sensitivity as layer_sensitivity
        from torchslim.report.html import write_html

        result = layer_sensitivity(net, splits.validation or splits.test, sparsities=levels)
        directory = out or Path("runs") / "analyze" / Path(model).name
        paths = result.save(directory)
        stats["sensitivity"] = result.to_dict()
        report.steps.append(
            {"index": 0, "technique": "sensitivity", "seconds": 0.0, "info": {"sensitivity": result.to_dict()}}
        )
        write_html(report, directory / "report.html")
        report.notes.append(
            f"sensitivity: {paths['json']} and {paths['png']}; most sensitive first: "
            + ", ".join(f"{name} ({-100 * drop:+.1f} pts)" for name, drop in result.ranking()[:5])
        )
    if as_json:
        echo_json(stats)
    else:
        typer.echo(report.render())


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
    as_json: bool = typer.Option(False, "--json"),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    # long: one parameter line per CLI option (typer reads the options from the signature)
    """Train a model on a dataset and save it as an artifact (a killed run resumes when rerun)."""
    from torchslim.cli.train import train_and_save

    _set_threads(threads)
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
    recipe: str = typer.Option(..., "--recipe", help="A recipe YAML file or a shipped recipe name."),
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
) -> None:
    # long: one parameter line per CLI option (typer reads the options from the signature)
    """Measure, run a recipe, measure again; write the artifact, report.json and report.html."""
    from torchslim.api import load_recipe
    from torchslim.core.recipe import apply_overrides

    _set_threads(threads)
    plan = load_recipe(recipe)
    if overrides:
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
    temperature: float = typer.Option(4.0, "--temperature", help="Softmax temperature T > 0."),
    alpha: float = typer.Option(0.9, "--alpha", help="Weight of the soft targets in [0, 1]."),
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
) -> None:
    # long: one parameter line per CLI option (typer reads the options from the signature)
    """Distil TEACHER into a student (KD + optional feature hints); report teacher vs student, save the student."""
    from torchslim.distillation.cli import distill_recipe

    _set_threads(threads)
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
    )


@app.command()
def export(
    model: str = ModelArg,
    onnx: Path = OnnxOpt,
    weights: str | None = WeightsOpt,
    num_classes: int | None = NumClassesOpt,
    batch_size: int = typer.Option(
        4, "--parity-batch", min=1, help="Batch of the parity check (the export has a dynamic batch)."
    ),
    opset: int = typer.Option(17, "--opset", min=13),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    # long: the output check, the staged export with its parity check, and the printed summary
    """Export a model or artifact to ONNX and check onnxruntime's output against PyTorch's."""
    from torchslim.cli.resolve import resolve_model
    from torchslim.core.errors import ModelError
    from torchslim.deploy import check_parity, export_onnx, integer_op_summary
    from torchslim.io import atomic_path
    from torchslim.io.outputs import check_output_file, clean_leftovers
    from torchslim.models import example_input, get_model_spec

    check_output_file(onnx, param="--onnx")
    clean_leftovers(onnx)
    net = resolve_model(model, weights=weights, num_classes=num_classes)
    if get_model_spec(net) is None:
        raise ModelError(
            f"{model!r}: the input shape of a user-defined architecture is unknown; export it from Python "
            "with torchslim.deploy.export_onnx(model, path, example_input)."
        )
    inputs = example_input(net, batch_size=batch_size, seed=1)
    with atomic_path(onnx) as staged:  # renamed onto --onnx only when parity passes
        facts = export_onnx(net, staged, inputs, opset=opset)
        parity = check_parity(net, staged, inputs)
        summary = {
            "onnx": str(onnx),
            "bytes": staged.stat().st_size,
            "quantized": facts.quantized,
            "parity": parity.to_dict(),
            "onnxruntime_ops": integer_op_summary(staged),
            "notes": facts.notes,
        }
        if not parity.ok:
            raise ModelError(
                f"ONNX output for {onnx} does not match PyTorch's (max diff {parity.max_abs_diff:.3g}); "
                "nothing was written."
            )
    if as_json:
        echo_json(summary)
    else:
        kind = "int8 QDQ" if facts.quantized else "float"
        typer.echo(f"wrote {onnx} ({kind}, {summary['bytes']:,} bytes)")
        if parity.quantized:
            typer.echo(
                f"parity: max |onnx - pytorch| = {parity.max_abs_diff:.3g} = {parity.max_diff_in_steps:.3f} "
                f"quantization steps (tolerance 2 steps): {'OK' if parity.ok else 'FAILED'}"
            )
        else:
            typer.echo(
                f"parity: max |onnx - pytorch| = {parity.max_abs_diff:.3g} (rtol 1e-3): "
                f"{'OK' if parity.ok else 'FAILED'}"
            )
        for note in facts.notes:
            typer.echo(f"note: {note}")


app.command("deploy")(deploy_command)
app.command("lottery")(lottery_command)


@app.command("report")
def show_report(
    directory: Path = ReportDirArg,
    as_json: bool = typer.Option(False, "--json", help="Print report.json."),
    open_html: bool = typer.Option(False, "--open", help="Open report.html in the default web browser."),
) -> None:
    """Print the report saved in an artifact directory (and with --open show report.html in a browser)."""
    from torchslim.core.errors import ArtifactError
    from torchslim.io import read_report
    from torchslim.report import Report

    data = read_report(directory)
    if data is None:
        raise ArtifactError(f"{str(directory)!r} has no report.json.")
    if open_html:
        open_in_browser(directory / "report.html")
    if as_json:
        echo_json(data)
        return
    try:
        text = Report.from_dict(data).render()
    except (TypeError, KeyError, AttributeError, ValueError, IndexError) as exc:
        raise ArtifactError(
            f"{str(directory / 'report.json')!r} does not have the shape of a torchslim report: "
            f"{type(exc).__name__}: {str(exc)[:200]}"
        ) from exc
    typer.echo(text)


def open_in_browser(page: Path) -> None:
    """Open `page` in the default browser; say where it is when no browser can be started (e.g. over ssh)."""
    import webbrowser

    from torchslim.core.errors import ArtifactError

    if not page.is_file():
        raise ArtifactError(f"--open: {str(page)!r} does not exist (the artifact has no HTML report).")
    if not webbrowser.open(page.resolve().as_uri()):
        typer.echo(f"no web browser could be started here; open {page.resolve()} yourself.", err=True)


@app.command("list")
def list_all(as_json: bool = typer.Option(False, "--json")) -> None:
    """Registered techniques, shipped recipes, built-in models and datasets."""
    from torchslim.core.technique import TECHNIQUES
    from torchslim.data import DATASETS
    from torchslim.models import MODELS
    from torchslim.recipes import shipped_recipe_names

    listing = {
        "techniques": {e.name: _technique_summary(e.config_type) for e in TECHNIQUES},
        "recipes": shipped_recipe_names(),
        "models": {name: info.description for name, info in sorted(MODELS.items())},
        "datasets": {name: info.description for name, info in sorted(DATASETS.items())},
    }
    if as_json:
        echo_json(listing)
        return
    for section, items in listing.items():
        typer.echo(f"{section}:")
        if isinstance(items, dict):
            for name, text in items.items():
                typer.echo(f"  {name:<22} {text}")
        else:
            for name in items:
                typer.echo(f"  {name}")


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
) -> None:
    """The main job end to end: train fmnist-cnn on Fashion-MNIST, then prune + distill + int8 it."""
    from torchslim.demo import run_demo
    from torchslim.io.outputs import check_output_file

    check_output_file(out / "report.html", param="--out")
    _set_threads(threads)
    report = run_demo(
        out=out,
        threads=threads,
        train_samples=train_samples,
        eval_samples=eval_samples,
        epochs=epochs,
        distill_epochs=distill_epochs,
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

    args = list(sys.argv[1:] if argv is None else argv)
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
