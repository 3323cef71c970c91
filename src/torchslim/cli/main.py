"""The `torchslim` command line: a thin layer over the Python API (typer + rich)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from torchslim.core.config import TechniqueConfig
from torchslim.core.errors import TorchSlimError
from torchslim.core.recipe import Recipe

app = typer.Typer(
    name="torchslim",
    help="Make trained PyTorch models really smaller, faster and cheaper in energy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ModelArg = typer.Argument(..., help="A built-in model name (see `torchslim list`) or a torchslim artifact directory.")
WeightsOpt = typer.Option(None, "--weights", help="A .safetensors or state-dict file for a built-in architecture.")
DataOpt = typer.Option(None, "--data", help="Dataset name: fashion-mnist, digits or tweets.")
TrainSamplesOpt = typer.Option(None, "--train-samples", min=1, help="Use at most N training samples (quick runs).")
EvalSamplesOpt = typer.Option(None, "--eval-samples", min=1, help="Use at most N evaluation samples (quick runs).")
ThreadsOpt = typer.Option(None, "--threads", min=1, help="Torch threads for training and measurement.")
DataRootOpt = typer.Option(
    None, "--data-root", help="Directory holding the dataset files (default: the standard locations)."
)
NumClassesOpt = typer.Option(
    None, "--num-classes", min=1, help="Classes of a built-in model's head (e.g. 3 for minilm-l6 on tweets)."
)
SensitivityOutOpt = typer.Option(
    None, "--out", help="Where --sensitivity writes sensitivity.json/.png and report.html."
)
TrainOutOpt = typer.Option(..., "--out", help="Artifact directory to write.")
CompressOutOpt = typer.Option(..., "--out", help="Artifact directory to write (with report.json).")
OverridesOpt = typer.Option([], "--set", help="Dotted override, e.g. steps.0.config.lr=0.01 (repeatable).")
DistillOutOpt = typer.Option(..., "--out", help="Artifact directory for the trained student (with report.json).")
FeaturesOpt = typer.Option([], "--feature", help="teacher_module:student_module[:loss] or auto[:loss] (repeatable).")
OnnxOpt = typer.Option(..., "--onnx", help="ONNX file to write (int8 QDQ for quantized layers, else float).")
ReportDirArg = typer.Argument(..., help="An artifact directory with report.json.")
DemoOutOpt = typer.Option(Path("runs/demo"), "--out", help="Where the demo writes its artifacts.")


def _echo_json(obj: object) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


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
    batch_size: int = typer.Option(1, "--batch-size", min=1, help="Batch size of the latency measurement."),
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
    """Params, non-zeros, MACs, bytes on disk, latency, energy and (with --data) accuracy."""
    from torchslim.api import analyze as analyze_model
    from torchslim.cli.resolve import resolve_data, resolve_model
    from torchslim.report import Report

    _set_threads(threads)
    net = resolve_model(model, weights=weights, num_classes=num_classes)
    splits = resolve_data(
        data, batch_size=128, train_samples=train_samples, eval_samples=eval_samples, seed=0, root=data_root
    )
    from torchslim.core.errors import ConfigError

    if sensitivity and splits is None:
        raise ConfigError("--sensitivity needs --data (the curves are accuracies).")
    try:
        levels = [float(v) for v in sparsities.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--sparsities {sparsities!r} must be comma-separated numbers in [0, 1).") from None
    stats = analyze_model(net, splits, batch_size=batch_size, threads=threads, repeats=repeats).to_dict()
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
        _echo_json(stats)
    else:
        typer.echo(report.render())


@app.command()
def train(
    model: str = ModelArg,
    data: str = typer.Option(..., "--data", help="Dataset name: fashion-mnist, digits or tweets."),
    data_root: str | None = DataRootOpt,
    epochs: int = typer.Option(1, "--epochs", min=0),
    out: Path = TrainOutOpt,
    lr: float = typer.Option(1e-3, "--lr"),
    batch_size: int = typer.Option(128, "--batch-size", min=1),
    seed: int = typer.Option(0, "--seed"),
    weights: str | None = WeightsOpt,
    train_samples: int | None = TrainSamplesOpt,
    eval_samples: int | None = EvalSamplesOpt,
    threads: int | None = ThreadsOpt,
    num_classes: int | None = NumClassesOpt,
    as_json: bool = typer.Option(False, "--json"),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    # long: one parameter line per CLI option (typer reads the options from the signature)
    """Train a model on a dataset and save it as an artifact."""
    from torchslim.api import analyze as analyze_model
    from torchslim.cli.resolve import resolve_data, resolve_model
    from torchslim.io import save
    from torchslim.models import MODELS
    from torchslim.report import Report
    from torchslim.train import TrainConfig
    from torchslim.train import train as train_model

    _set_threads(threads)
    pretrained_name = model in MODELS and weights is None
    net = resolve_model(model, weights=weights, num_classes=num_classes) if not pretrained_name else None
    if net is None:
        from torchslim.models import build_model

        net = build_model(model, num_classes=num_classes) if num_classes else build_model(model)
    splits = resolve_data(
        data, batch_size=batch_size, train_samples=train_samples, eval_samples=eval_samples, seed=seed, root=data_root
    )
    result = train_model(
        net,
        splits.train,
        config=TrainConfig(epochs=epochs, lr=lr),
        seed=seed,
        run_dir=out.parent / f".{out.name}.train",
        quiet=quiet,
    )
    net.eval()
    stats = analyze_model(net, splits, threads=threads).to_dict()
    report = Report(
        model=model,
        before=stats,
        dataset=data,
        notes=[f"trained {result.steps} steps, {epochs} epoch(s), final loss {result.final_loss:.4f}"],
    )
    save(
        net,
        out,
        report=report.to_dict(),
        config={"train": {"epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed}},
    )
    if as_json:
        _echo_json(report.to_dict())
    else:
        typer.echo(report.render())
        typer.echo(f"artifact: {out}")


@app.command()
def compress(
    model: str = ModelArg,
    data: str = typer.Option(..., "--data", help="Dataset name: fashion-mnist, digits or tweets."),
    recipe: str = typer.Option(..., "--recipe", help="A recipe YAML file or a shipped recipe name."),
    data_root: str | None = DataRootOpt,
    out: Path = CompressOutOpt,
    overrides: list[str] = OverridesOpt,
    weights: str | None = WeightsOpt,
    batch_size: int = typer.Option(1, "--batch-size", min=1, help="Batch size of the latency measurement."),
    train_batch_size: int = typer.Option(128, "--train-batch-size", min=1),
    seed: int = typer.Option(0, "--seed"),
    train_samples: int | None = TrainSamplesOpt,
    eval_samples: int | None = EvalSamplesOpt,
    threads: int | None = ThreadsOpt,
    num_classes: int | None = NumClassesOpt,
    as_json: bool = typer.Option(False, "--json", help="Print report.json."),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Measure, run a recipe, measure again; write the artifact and report.json."""
    from torchslim.api import load_recipe
    from torchslim.core.recipe import apply_overrides

    _set_threads(threads)
    plan = load_recipe(recipe)
    if overrides:
        plan = Recipe.from_dict(apply_overrides(plan.to_dict(), overrides))
    _compress_and_save(
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
    )


@app.command()
def distill(
    teacher: str = ModelArg,
    student: str = typer.Option(
        ..., "--student", help="Student spec: depth:K, layers:N, width:R, a built-in model name or a JSON model spec."
    ),
    data: str = typer.Option(..., "--data", help="Dataset name: fashion-mnist, digits or tweets."),
    out: Path = DistillOutOpt,
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
    batch_size: int = typer.Option(1, "--batch-size", min=1, help="Batch size of the latency measurement."),
    train_batch_size: int = typer.Option(128, "--train-batch-size", min=1),
    seed: int = typer.Option(0, "--seed"),
    train_samples: int | None = TrainSamplesOpt,
    eval_samples: int | None = EvalSamplesOpt,
    threads: int | None = ThreadsOpt,
    num_classes: int | None = NumClassesOpt,
    as_json: bool = typer.Option(False, "--json", help="Print report.json."),
    quiet: bool = typer.Option(False, "--quiet"),
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
    _compress_and_save(
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
    )


def _compress_and_save(
    model: str,
    plan: Recipe,
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
) -> None:
    """What `compress` and `distill` share: resolve MODEL and the data, run `plan`, save, print."""
    from torchslim.api import compress as compress_model
    from torchslim.cli.resolve import resolve_data, resolve_model

    net = resolve_model(model, weights=weights, num_classes=num_classes)
    splits = resolve_data(
        data,
        batch_size=train_batch_size,
        train_samples=train_samples,
        eval_samples=eval_samples,
        seed=seed,
        root=data_root,
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
    )
    result.save(out)
    if as_json:
        _echo_json(result.report.to_dict())
    else:
        typer.echo(result.report.render())
        typer.echo(f"artifact: {out}")


@app.command()
def export(
    model: str = ModelArg,
    onnx: Path = OnnxOpt,
    weights: str | None = WeightsOpt,
    num_classes: int | None = NumClassesOpt,
    batch_size: int = typer.Option(
        4, "--batch-size", min=1, help="Batch of the parity check (the export has a dynamic batch)."
    ),
    opset: int = typer.Option(17, "--opset", min=13),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Export a model or artifact to ONNX and check onnxruntime's output against PyTorch's."""
    from torchslim.cli.resolve import resolve_model
    from torchslim.core.errors import ModelError
    from torchslim.deploy import check_parity, export_onnx, integer_op_summary
    from torchslim.models import example_input, get_model_spec

    net = resolve_model(model, weights=weights, num_classes=num_classes)
    if get_model_spec(net) is None:
        raise ModelError(
            f"{model!r}: the input shape of a user-defined architecture is unknown; export it from Python "
            "with torchslim.deploy.export_onnx(model, path, example_input)."
        )
    inputs = example_input(net, batch_size=batch_size, seed=1)
    facts = export_onnx(net, onnx, inputs, opset=opset)
    parity = check_parity(net, onnx, inputs)
    summary = {
        "onnx": str(onnx),
        "bytes": onnx.stat().st_size,
        "quantized": facts.quantized,
        "parity": parity.to_dict(),
        "onnxruntime_ops": integer_op_summary(onnx),
        "notes": facts.notes,
    }
    if as_json:
        _echo_json(summary)
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
    if not parity.ok:
        raise ModelError(f"ONNX output of {onnx} does not match PyTorch's (max diff {parity.max_abs_diff:.3g}).")


@app.command("report")
def show_report(
    directory: Path = ReportDirArg,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Print the report saved in an artifact directory."""
    from torchslim.core.errors import ArtifactError
    from torchslim.io import read_report
    from torchslim.report import Report

    data = read_report(directory)
    if data is None:
        raise ArtifactError(f"{str(directory)!r} has no report.json.")
    if as_json:
        _echo_json(data)
    else:
        typer.echo(Report.from_dict(data).render())


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
        _echo_json(listing)
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
        _echo_json(report.to_dict())
    else:
        typer.echo(report.render())
        typer.echo(f"artifacts: {out}")
        typer.echo(f"HTML report: {out / 'report.html'}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; torchslim's own errors become one clear line and exit code 2."""
    try:
        app(args=argv, standalone_mode=False)
    except TorchSlimError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", getattr(exc, "code", 0))
        sys.exit(code or 0)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        raise
