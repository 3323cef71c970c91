"""`torchslim deploy`: time a model on every available runtime and keep the fastest with parity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from torchslim.cli.options import LatencyBatchOpt, ModelArg, NumClassesOpt, WeightsOpt
from torchslim.cli.run import echo_json
from torchslim.deploy.backend import PARITY_COSINE

DeployOutOpt = typer.Option(None, "--out", help="Keep each runtime's exported file in this folder.")
DeployStrictOpt = typer.Option(False, "--strict", help="Exit 3 when the model is slower than --baseline everywhere.")


def deploy_command(
    model: str = ModelArg,
    target: str = typer.Option(
        "auto", "--target", help="auto (every available runtime), onnxruntime, openvino or executorch."
    ),
    batch_size: int = LatencyBatchOpt,
    threads: int = typer.Option(2, "--threads", min=1, help="Threads every runtime runs."),
    baseline: str | None = typer.Option(
        None, "--baseline", help="The fp32 model before compression (a name or artifact), timed beside it."
    ),
    out: Path | None = DeployOutOpt,
    strict: bool = DeployStrictOpt,
    weights: str | None = WeightsOpt,
    num_classes: int | None = NumClassesOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the selection as JSON."),
    parity_steps: float = typer.Option(
        2.0,
        "--parity-steps",
        help="Parity bound of a compressed model, in 8-bit steps of its output range (deep int8 networks "
        "may drift further by compounding rounding; docs/deploy.md).",
    ),
    parity_cosine: float = typer.Option(
        PARITY_COSINE,
        "--parity-cosine",
        help="A compressed model further off than --parity-steps still passes when every sample's cosine to "
        "PyTorch's output is at least this, with no offset or scale change and the same top-1; 1 turns it off.",
    ),
) -> None:
    # long: the command's options are one typer option each (a declaration, not logic); the body is 30 lines
    """Export MODEL to each runtime, check parity, time it on your batch and threads; report the fastest."""
    from torchslim.cli.resolve import resolve_model
    from torchslim.core.errors import ModelError
    from torchslim.deploy import markdown_table, select_backend
    from torchslim.io.outputs import check_output_dir
    from torchslim.models import example_input, get_model_spec

    if out is not None:
        check_output_dir(out)
    net = resolve_model(model, weights=weights, num_classes=num_classes)
    if get_model_spec(net) is None:
        raise ModelError(
            f"{model!r}: the input shape of a user-defined architecture is unknown; deploy it from Python "
            "with CompressionResult.deploy(...) or torchslim.deploy.select_backend(model, example_input, ...)."
        )
    reference = resolve_model(baseline) if baseline is not None else None
    selection = select_backend(
        net,
        example_input(net, batch_size=1, seed=1),
        batch_size=batch_size,
        threads=threads,
        candidates=None if target == "auto" else [target],
        baseline=reference,
        directory=out,
        parity_steps=parity_steps,
        parity_cosine=None if parity_cosine == 1 else parity_cosine,
    )
    if as_json:
        echo_json(selection.to_dict())
    else:
        typer.echo(markdown_table({model: selection}))
        for warning in selection.warnings:
            typer.echo(f"WARNING: {warning}")
    if selection.best is None:
        raise _no_parity(model, selection)
    if strict and selection.warnings:
        typer.echo(f"--strict: {len(selection.warnings)} warning(s)", err=True)
        raise typer.Exit(3)


def _no_parity(model: str, selection: Any) -> Exception:
    """The error of a run where no runtime passed parity: each failed backend's reason (how far off)."""
    from torchslim.core.errors import ModelError

    reasons = "; ".join(f"{f.name}: {f.reason}" for f in selection.backends if f.available and f.reason)
    return ModelError(
        f"{model!r}: no runtime ran it with parity; see the table above. {reasons} (a near-1 cosine and top-1 "
        "agreement point to rounding that compounds over many int8 layers: --parity-steps and --parity-cosine "
        "move the bounds; a low cosine or an offset to a broken export)"
    )
