"""The commands that read a model or an artifact without compressing it: analyze, export, report, list."""

from __future__ import annotations

from pathlib import Path

import typer

from torchslim.cli.options import (
    DataOpt,
    DataRootOpt,
    EvalSamplesOpt,
    LatencyBatchOpt,
    ModelArg,
    NumClassesOpt,
    OnnxOpt,
    ReportDirArg,
    SensitivityOutOpt,
    ThreadsOpt,
    TrainSamplesOpt,
    WeightsOpt,
)
from torchslim.cli.run import echo_json
from torchslim.core.config import TechniqueConfig


def set_threads(threads: int | None) -> None:
    """Torch threads for this command (None: torch's default)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _technique_summary(config_type: type[TechniqueConfig] | None) -> str:
    """A technique config's one-line summary: its ``summary``, else its docstring's first line."""
    if config_type is None:
        return ""
    if config_type.summary:
        return config_type.summary
    lines = (config_type.__doc__ or "").strip().splitlines()
    return lines[0] if lines else ""


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
    set_threads(threads)
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
            verdict = {"within steps": "OK", "close": "OK, close"}.get(parity.verdict, "FAILED")
            typer.echo(
                f"parity: max |onnx - pytorch| = {parity.max_abs_diff:.3g} = {parity.max_diff_in_steps:.3f} "
                f"quantization steps (tolerance 2 steps, or close: lowest cosine {parity.cosine:.5f} >= "
                f"{parity.cosine_bound}, mean difference {parity.mean_diff_in_steps:+.2f} steps, the same top-1): "
                f"{verdict}"
            )
        else:
            typer.echo(
                f"parity: max |onnx - pytorch| = {parity.max_abs_diff:.3g} (rtol 1e-3): "
                f"{'OK' if parity.ok else 'FAILED'}"
            )
        for note in facts.notes:
            typer.echo(f"note: {note}")


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
