"""`torchslim demo`: the main job end to end on built-in defaults.

Today: train (or reuse the cached) `fmnist-cnn` on Fashion-MNIST and report it. Each technique
extends the demo until it tells the whole compression story.
"""

from __future__ import annotations

import json
from pathlib import Path

from torchslim.report import Report

DEMO_MODEL = "fmnist-cnn"
DEMO_DATA = "fashion-mnist"
LATENCY_BATCH = 64


def _baseline(out: Path, *, epochs: int, train_samples: int | None, splits, seed: int, quiet: bool):
    """Reuse ``out/baseline`` when it was trained with the same settings, else train and save it."""
    from torchslim.io import load, read_manifest, save
    from torchslim.models import build_model
    from torchslim.train import TrainConfig, train

    directory = out / "baseline"
    wanted = {"model": DEMO_MODEL, "epochs": epochs, "train_samples": train_samples, "seed": seed}
    if (directory / "torchslim.json").is_file():
        if read_manifest(directory).get("config", {}).get("demo_baseline") == wanted:
            return load(directory), True
    model = build_model(DEMO_MODEL, seed=seed)
    train(model, splits.train, config=TrainConfig(epochs=epochs, lr=1e-3), seed=seed, run_dir=out / ".baseline-train", quiet=quiet)
    model.eval()
    save(model, directory, config={"demo_baseline": wanted})
    return model, False


def run_demo(
    *,
    out: Path,
    threads: int | None = None,
    train_samples: int | None = None,
    eval_samples: int | None = None,
    epochs: int = 2,
    seed: int = 0,
    quiet: bool = False,
) -> Report:
    from torchslim.api import analyze
    from torchslim.data import load_splits
    from torchslim.io import write_json
    from torchslim.report.html import write_html

    out = Path(out)
    splits = load_splits(DEMO_DATA, batch_size=128, train_samples=train_samples, eval_samples=eval_samples, seed=seed)
    model, reused = _baseline(out, epochs=epochs, train_samples=train_samples, splits=splits, seed=seed, quiet=quiet)
    stats = analyze(model, splits, batch_size=LATENCY_BATCH, threads=threads)
    note = ("reused the cached baseline in " if reused else "trained the baseline and saved it to ") + str(out / "baseline")
    report = Report(model=DEMO_MODEL, before=stats.to_dict(), dataset=DEMO_DATA, notes=[note, f"{epochs} epoch(s) of training"])
    write_json(out / "report.json", report.to_dict())
    write_html(report, out / "report.html")
    return report


def main() -> None:  # pragma: no cover - convenience
    print(json.dumps(run_demo(out=Path("runs/demo")).to_dict(), indent=2, default=str))
