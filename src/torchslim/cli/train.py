"""`torchslim train`: check the output, seed, build, train with resumable checkpoints, save.

Order matters for reproducibility and for never wasting a run: the output path is validated first,
the seed is applied before the model is built (two runs with the same ``--seed`` start from the same
weights, so their checkpoints match and a killed run resumes), the model is tried on one batch of the
data (a wrong shape is a :class:`~torchslim.core.errors.DataError`, not a traceback mid-training),
checkpoints go to ``.OUT.run`` beside the artifact every ``--checkpoint-every`` steps (default: every
epoch), and that folder is deleted once the artifact is saved.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from torch import nn

from torchslim.cli.run import run_dir_for


def _build(model: str, *, weights: str | None, num_classes: int | None, seed: int) -> nn.Module:
    from torchslim.cli.resolve import resolve_model

    return resolve_model(model, weights=weights, num_classes=num_classes, seed=seed)


def _steps_per_epoch(loader: Any) -> int | None:
    try:
        return max(1, len(loader))
    except TypeError:
        return None


def train_and_save(
    model: str,
    *,
    data: str,
    data_root: str | None,
    epochs: int,
    out: Path,
    force: bool = False,
    lr: float,
    batch_size: int,
    seed: int,
    weights: str | None,
    train_samples: int | None,
    eval_samples: int | None,
    threads: int | None,
    num_classes: int | None,
    checkpoint_every: int | None,
    quiet: bool,
    grid_intensity: float | None = None,
) -> Any:
    # long: one keyword per CLI option, then the steps in the order the module docstring gives
    """Train MODEL on DATA and save the artifact at `out`; return the report."""
    from torchslim.api import analyze as analyze_model
    from torchslim.api import check_model_accepts_data
    from torchslim.cli.resolve import ALLOW_NONFINITE, resolve_data
    from torchslim.io import save
    from torchslim.io.outputs import check_output_dir, clean_leftovers
    from torchslim.io.weights import check_finite
    from torchslim.measure.payback import energy_section
    from torchslim.measure.run_energy import RunEnergyMeter
    from torchslim.report import Report
    from torchslim.train import TrainConfig
    from torchslim.train import train as train_model

    check_output_dir(out, overwrite=force)
    clean_leftovers(out)
    net = _build(model, weights=weights, num_classes=num_classes, seed=seed)
    splits = resolve_data(
        data,
        batch_size=batch_size,
        train_samples=train_samples,
        eval_samples=eval_samples,
        seed=seed,
        root=data_root,
        model=net,
    )
    check_model_accepts_data(net, splits)
    every = checkpoint_every or _steps_per_epoch(splits.train)
    with RunEnergyMeter(grid_intensity=grid_intensity) as meter:
        result = train_model(
            net,
            splits.train,
            config=TrainConfig(epochs=epochs, lr=lr, checkpoint_every=every),
            seed=seed,
            run_dir=run_dir_for(out),
            quiet=quiet,
        )
    net.eval()
    check_finite(net.state_dict(), source=f"the model trained for {out}", allow=ALLOW_NONFINITE.get())
    stats = analyze_model(net, splits, threads=threads).to_dict()
    loss = "n/a" if result.final_loss is None else f"{result.final_loss:.4f}"
    report = Report(
        model=model,
        before=stats,
        dataset=data,
        notes=[f"trained {result.steps} steps, {epochs} epoch(s), final loss {loss}"],
        energy=energy_section(meter.result, scope="training"),
    )
    save(
        net,
        out,
        report=report.to_dict(),
        config={"train": {"epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed}},
    )
    shutil.rmtree(run_dir_for(out), ignore_errors=True)
    return report
