"""Deep Compression with torchslim: lenet-300-100 on Fashion-MNIST, recipe ``deep-compression``.

The section function :func:`run_deep_compression` is what ``benchmarks/nonuniform.py`` imports; run
standalone, this file trains (or reuses) the float baseline and writes
``benchmarks/results/nonuniform_torchslim{_quick}.{json,md}``::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/_nonuniform_torchslim.py [--quick]

What it measures, every number from this run:

* the fp32 baseline's file: its ``state_dict`` written with ``safetensors.torch.save_file``;
* the artifact: ``torchslim.save`` of the compressed model (``model.safetensors`` +
  ``torchslim.json``, the files ``torchslim.load`` needs), sizes read from the files on disk; also the
  ``result.save`` directory's model files (its manifest adds the recipe);
* test accuracy before and after, and a dense control trained for the same extra epochs the
  recipe fine-tunes (so the recipe's extra training is not mistaken for a compression gain);
* a fresh interpreter loads the artifact and gives the identical outputs;
* ONNX (the dequantized float weights) run by onnxruntime against PyTorch.

The runtime computes with float weights decoded on load: the gain is size on disk, not speed.
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from _harness import log, md_table, new_results, write_results  # noqa: E402

MODEL_FILES = ("model.safetensors", "torchslim.json")
LOADER = r"""
import sys, torch
from safetensors.torch import load_file, save_file
import torchslim
torch.set_num_threads(1)
model = torchslim.load(sys.argv[1])
with torch.no_grad():
    out = model(load_file(sys.argv[2])["x"])
save_file({"y": out.contiguous()}, sys.argv[3])
"""


def accuracy(model: nn.Module, loader: Any) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            correct += int((model(x).argmax(dim=1) == y).sum())
            total += int(y.numel())
    return correct / max(total, 1)


def fp32_safetensors_bytes(model: nn.Module, directory: Path) -> int:
    from safetensors.torch import save_file

    path = directory / "fp32.safetensors"
    save_file({k: v.detach().float().contiguous() for k, v in model.state_dict().items()}, str(path))
    return path.stat().st_size


def model_file_bytes(directory: Path) -> dict[str, int]:
    return {name: (directory / name).stat().st_size for name in MODEL_FILES}


def fresh_process_identical(directory: Path, model: nn.Module, x: torch.Tensor, work: Path) -> bool:
    """True when ``torchslim.load`` in a new interpreter gives exactly `model`'s outputs on `x`."""
    from safetensors.torch import load_file, save_file

    save_file({"x": x.contiguous()}, str(work / "x.safetensors"))
    done = subprocess.run(
        [sys.executable, "-c", LOADER, str(directory), str(work / "x.safetensors"), str(work / "y.safetensors")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"fresh-process load failed: {done.stderr[-2000:]}")
    with torch.no_grad():
        want = model(x)
    return bool(torch.equal(load_file(str(work / "y.safetensors"))["y"], want))


def onnx_parity(model: nn.Module, x: torch.Tensor, work: Path) -> dict[str, Any]:
    """Export (dequantized float weights), run with onnxruntime on 1 thread, compare with PyTorch."""
    import onnxruntime as ort

    from torchslim.deploy import export_onnx

    path = work / "model.onnx"
    facts = export_onnx(model, path, x[:1])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        ref = model(x).numpy()
    diff = float(np.abs(got - ref).max())
    return {
        "onnx_bytes": int(path.stat().st_size),
        "max_abs_diff": diff,
        "parity_rtol_1e-3": bool(np.allclose(got, ref, rtol=1e-3, atol=1e-5)),
        "integer_weight_layers": list(facts.integer_layers),
        "float_weight_layers": list(facts.float_weight_layers),
    }


def dense_control(model: nn.Module, splits: Any, recipe: Any, *, seed: int) -> float:
    """Accuracy of the float baseline trained on for the epochs the recipe fine-tunes in total."""
    from torchslim.train import TrainConfig, train

    epochs = 0
    for step in recipe.steps:
        train_config = getattr(step.config, "train", None)
        rounds = getattr(step.config, "steps", 1) if getattr(step.config, "schedule", "") == "iterative" else 1
        epochs += int(getattr(train_config, "epochs", 0) or 0) * int(rounds)
    control = copy.deepcopy(model)
    train(control, splits.train, config=TrainConfig(epochs=epochs, lr=5e-4), seed=seed, quiet=True)
    return accuracy(control, splits.test)


def run_deep_compression(model: nn.Module, splits: Any, *, seed: int, recipe: Any = "deep-compression") -> dict:
    # long: the measurements of one section in order (compress, sizes, accuracy, reload, ONNX)
    """Recipe ``deep-compression`` on the trained float `model` with `splits`; every number measured here.

    Returns a row dict: bytes of the fp32 safetensors file and of the artifact (from the files on
    disk), the size ratio, accuracies and the drop in points, the fresh-process check, ONNX parity,
    per-layer codes, and the checks of issue 18 (>= 50x, drop <= 0.3 points).
    """
    import torchslim as ts
    from torchslim.core.recipe import Recipe
    from torchslim.recipes import shipped_recipe

    recipe = shipped_recipe(recipe) if isinstance(recipe, str) else recipe
    assert isinstance(recipe, Recipe)
    model = model.eval()
    dense_acc = accuracy(model, splits.test)
    with tempfile.TemporaryDirectory(prefix="ts-deep-compression-") as tmp:
        work = Path(tmp)
        fp32 = fp32_safetensors_bytes(model, work)
        started = time.perf_counter()
        result = ts.compress(model, splits, recipe=recipe, seed=seed, repeats=1, quiet=True, runtime="pytorch")
        seconds = time.perf_counter() - started
        compressed = result.model.eval()
        artifact = Path(ts.save(compressed, work / "artifact"))
        files = model_file_bytes(artifact)
        with_report = model_file_bytes(Path(result.save(work / "result", html=False)))
        x = next(iter(splits.test))[0][:64]
        identical = fresh_process_identical(artifact, compressed, x, work)
        onnx = onnx_parity(compressed, x, work)
    after_acc = accuracy(compressed, splits.test)
    total = sum(files.values())
    drop_points = (dense_acc - after_acc) * 100
    layers = [
        {k: row.get(k) for k in ("layer", "weight_bits", "weight_sqnr_db", "params")}
        for step in result.report.steps
        for row in (step.get("layers") or [])
        if step.get("technique") == "kmeans_quant"
    ]
    return {
        "recipe": [step.config.name for step in recipe.steps],
        "fp32_safetensors_bytes": fp32,
        "artifact_bytes": total,
        "artifact_files": files,
        "files": files,
        "result_save_model_bytes": sum(with_report.values()),
        "size_ratio": fp32 / total,
        "dense_accuracy": dense_acc,
        "accuracy": after_acc,
        "drop_points": drop_points,
        "fresh_process_identical": identical,
        "onnx": onnx,
        "kmeans_layers": layers,
        "compress_seconds": seconds,
        "checks": {
            "artifact >= 50x smaller than fp32 safetensors": fp32 / total >= 50,
            "accuracy drop <= 0.3 points": drop_points <= 0.3,
            "fresh process loads with identical outputs": identical,
            "onnxruntime parity (rtol 1e-3)": onnx["parity_rtol_1e-3"],
        },
        "note": (
            "size gained, not speed: the artifact decodes to float weights on load and ONNX carries the "
            "dequantized float weights, so PyTorch and onnxruntime run dense float kernels at fp32 speed"
        ),
    }


def train_baseline(splits: Any, *, seed: int, epochs: int, cache: Path | None) -> nn.Module:
    """lenet-300-100 trained with the one training path (Adam, lr 1e-3), cached by its settings."""
    import torchslim as ts
    from torchslim.models import build_model
    from torchslim.train import TrainConfig, train

    key = {"model": "lenet-300-100", "epochs": epochs, "seed": seed, "train_samples": len(splits.train.dataset)}
    if cache is not None and (cache / "torchslim.json").is_file():
        from torchslim.io import read_manifest

        if read_manifest(cache).get("config", {}).get("bench_baseline") == key:
            return ts.load(cache)
    model = build_model("lenet-300-100", seed=seed)
    train(model, splits.train, config=TrainConfig(epochs=epochs, lr=1e-3), seed=seed, quiet=True)
    if cache is not None:
        ts.save(model.eval(), cache, config={"bench_baseline": key})
    return model.eval()


def markdown(results: dict[str, Any]) -> str:
    row = results["sections"]["deep_compression"]
    lines = ["# Deep Compression with torchslim (lenet-300-100, Fashion-MNIST)", ""]
    if "error" in row:
        return "\n".join([*lines, f"FAILED: {row['error']}", ""])
    lines += md_table(
        ["model", "bytes on disk", "ratio", "test accuracy", "drop (points)"],
        [
            ["fp32 safetensors", f"{row['fp32_safetensors_bytes']:,}", "1.0x", f"{row['dense_accuracy']:.4f}", "-"],
            [
                "deep-compression artifact",
                f"{row['artifact_bytes']:,}",
                f"{row['size_ratio']:.1f}x",
                f"{row['accuracy']:.4f}",
                f"{row['drop_points']:+.2f}",
            ],
        ],
    )
    control = row.get("dense_control_accuracy")
    control_note = (
        f"{control:.4f}, so against the control the drop is {100 * (control - row['accuracy']):+.2f} points"
        if isinstance(control, float)
        else "not run"
    )
    lines += [
        "",
        f"Baseline: {results.get('baseline_epochs', '?')} epochs (Adam, lr 1e-3, 1 thread). Artifact files: "
        f"{row['artifact_files']}; with the recipe in the manifest (result.save): "
        f"{row['result_save_model_bytes']:,} bytes. Dense control (the baseline trained on for the epochs the "
        f"recipe fine-tunes, lr 5e-4): {control_note}.",
        f"ONNX: {row['onnx']}. {row['note']}.",
        "",
        "## Checks",
        "",
    ]
    lines += [f"- [{'x' if ok else ' '}] {name}" for name, ok in row["checks"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from torchslim.data import load_splits

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,048 training samples, 1 baseline epoch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=10, help="baseline training epochs")
    parser.add_argument("--cache", type=Path, default=Path("~/.cache/torchslim/benchmarks").expanduser())
    parser.add_argument("--no-control", action="store_true", help="skip the dense control run")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    quick = {"train_samples": 2048, "eval_samples": 1000} if args.quick else {}
    splits = load_splits("fashion-mnist", batch_size=128, seed=args.seed, **quick)
    epochs = 1 if args.quick else args.epochs
    cache = None if args.quick else args.cache / f"lenet-300-100-e{epochs}-s{args.seed}"
    model = train_baseline(splits, seed=args.seed, epochs=epochs, cache=cache)
    results = new_results(quick=args.quick, threads=1, baseline_epochs=epochs)
    started = time.perf_counter()
    row = run_deep_compression(model, splits, seed=args.seed)
    if not args.no_control:
        from torchslim.recipes import shipped_recipe

        row["dense_control_accuracy"] = dense_control(model, splits, shipped_recipe("deep-compression"), seed=args.seed)
    row["seconds"] = time.perf_counter() - started
    results["sections"]["deep_compression"] = row
    log(f"deep-compression: {row['size_ratio']:.1f}x, drop {row['drop_points']:+.2f} points")
    report = markdown(results)
    stem = (
        "nonuniform_torchslim"
        + ("_quick" if args.quick else "")
        + ("" if args.quick or epochs == 10 else f"_e{epochs}")
    )
    write_results(args.out, stem, results, report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
