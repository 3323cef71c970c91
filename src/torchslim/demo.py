"""`torchslim demo`: the main job end to end on built-in defaults.

1. Train (or reuse the cached) `fmnist-cnn` baseline on Fashion-MNIST.
2. Compress it with the shipped hybrid recipe `prune-kd-int8`: remove 50% of the channels
   physically, recover accuracy by distilling from the original, quantize to int8.
3. Print the before/after table (accuracy, params, MACs, bytes on disk, latency on onnxruntime and
   in PyTorch eager, energy) and write the artifact, report.json and a self-contained report.html.
   The report also gives the energy the compression run used (RAPL/NVML where readable, else
   estimated from CPU time, labelled so), the estimated energy saved per inference and the number
   of inferences after which compressing has paid back; the baseline's training energy is a note.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from torchslim.report import Report

DEMO_MODEL = "fmnist-cnn"
DEMO_DATA = "fashion-mnist"
DEMO_RECIPE = "prune-kd-int8"
LATENCY_BATCH = 64


def _baseline(
    out: Path, *, epochs: int, train_samples: int | None, splits, seed: int, quiet: bool, grid_intensity: float | None
):
    """Reuse ``out/baseline`` when it was trained with the same settings, else train and save it.

    Returns the model and, when it was trained now, the :class:`RunEnergy` of its training (None when reused)."""
    from torchslim.io import load, read_manifest, save
    from torchslim.measure.run_energy import RunEnergyMeter
    from torchslim.models import build_model
    from torchslim.train import TrainConfig, train

    directory = out / "baseline"
    wanted = {"model": DEMO_MODEL, "epochs": epochs, "train_samples": train_samples, "seed": seed}
    if (directory / "torchslim.json").is_file():
        if read_manifest(directory).get("config", {}).get("demo_baseline") == wanted:
            return load(directory), None
    model = build_model(DEMO_MODEL, seed=seed)
    with RunEnergyMeter(grid_intensity=grid_intensity) as meter:
        train(
            model,
            splits.train,
            config=TrainConfig(epochs=epochs, lr=1e-3),
            seed=seed,
            run_dir=out / ".baseline-train",
            quiet=quiet,
        )
    model.eval()
    save(model, directory, config={"demo_baseline": wanted})
    shutil.rmtree(out / ".baseline-train", ignore_errors=True)  # the checkpoints of a finished run
    return model, meter.result


def run_demo(
    *,
    out: Path,
    threads: int | None = None,
    train_samples: int | None = None,
    eval_samples: int | None = None,
    epochs: int = 2,
    distill_epochs: int = 1,
    seed: int = 0,
    quiet: bool = False,
    grid_intensity: float | None = None,
) -> Report:
    from torchslim.api import compress, load_recipe
    from torchslim.core.recipe import Recipe, apply_overrides
    from torchslim.data import load_splits
    from torchslim.io import write_json
    from torchslim.report.html import write_html

    out = Path(out)
    splits = load_splits(DEMO_DATA, batch_size=128, train_samples=train_samples, eval_samples=eval_samples, seed=seed)
    model, training = _baseline(
        out,
        epochs=epochs,
        train_samples=train_samples,
        splits=splits,
        seed=seed,
        quiet=quiet,
        grid_intensity=grid_intensity,
    )
    recipe = Recipe.from_dict(
        apply_overrides(load_recipe(DEMO_RECIPE).to_dict(), [f"steps.1.config.train.epochs={distill_epochs}"])
    )
    result = compress(
        model,
        splits,
        recipe=recipe,
        seed=seed,
        threads=threads,
        batch_size=LATENCY_BATCH,
        quiet=quiet,
        model_name=DEMO_MODEL,
        run_dir=out / ".compress-run",  # a killed demo resumes its training steps
        grid_intensity=grid_intensity,
    )
    report = result.report
    report.notes.insert(
        0,
        ("reused the cached baseline in " if training is None else "trained the baseline and saved it to ")
        + str(out / "baseline")
        + ("" if training is None else f" (training energy {training.joules:,.1f} J, {training.label})"),
    )
    report.notes.insert(
        1, f"baseline: {epochs} epoch(s); recipe {DEMO_RECIPE} with {distill_epochs} epoch(s) of distillation"
    )
    result.save(out / DEMO_RECIPE)
    write_json(out / "report.json", report.to_dict())
    write_html(report, out / "report.html")
    shutil.rmtree(out / ".compress-run", ignore_errors=True)
    return report
