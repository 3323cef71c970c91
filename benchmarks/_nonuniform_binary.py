"""Binary and ternary fmnist-cnn (issue 18, part B): bytes on disk and accuracy after STE training.

Imported by ``benchmarks/nonuniform.py`` (:func:`run_binary`) and runnable alone::

    python benchmarks/_nonuniform_binary.py --quick      # 8k training images, 1 float + 1 STE epoch (a few minutes)
    python benchmarks/_nonuniform_binary.py              # full Fashion-MNIST, 3 float + 1 STE epoch
    python benchmarks/_nonuniform_binary.py --kinds ttq --merge     # one kind, kept next to the others

For each kind (``binary``: XNOR-Net scale + clipped STE; ``ternary``: TWN; ``ttq``: ternary with
trained scales; ``binary-act``: binary weights and binary inputs of the binarized layers) on the
same trained fp32 fmnist-cnn, first and last layers kept at 8 bits:

* bytes: the artifact's model files (``model.safetensors`` + ``torchslim.json``, what ``ts.save``
  writes) against the fp32 ``model.safetensors`` of the same model, both from real files;
* accuracy on the 10k test images before and after, and the drop in points;
* the artifact loaded with ``torchslim.load`` in a fresh Python process gives identical outputs;
* the ONNX export (binary / ternary weights as int8 codes with ``DequantizeLinear``, TTQ as float
  weights) run by onnxruntime: accuracy and max |difference| to PyTorch;
* the stored weights take exactly two values (binary) or at most three ``{-a, 0, +a}`` per output channel;
* the control ``fp32-finetuned``: the fp32 model trained as many more epochs with the same schedule,
  since the straight-through epochs also train the model further.

Writes ``benchmarks/results/nonuniform_binary[_quick].json`` and ``.md`` when run alone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))
sys.path.insert(0, str(ROOT))

from _harness import env_line, log, md_table, new_results, write_results  # noqa: E402
from torchslim.core import Context, DataSplits  # noqa: E402
from torchslim.core.layer import compressed_layers  # noqa: E402
from torchslim.quantization.binary_config import (  # noqa: E402
    BINARY_TRAIN_DEFAULTS,
    Binarize,
    BinaryWeightsConfig,
    Ternarize,
)
from torchslim.quantization.binary_technique import binary_weights_handler  # noqa: E402
from torchslim.train import TrainConfig  # noqa: E402

GOALS: dict[str, tuple[float | None, float | None]] = {
    "binary": (25.0, 3.0),
    "binary-act": (None, None),
    "ternary": (14.0, 1.5),
    "ttq": (14.0, 1.5),
}
"""kind -> (smallest size ratio vs the fp32 safetensors file, largest accuracy drop in points) (issue 18;
the optional binary activations have no goal)."""
MODEL_FILES = ("model.safetensors", "torchslim.json")
CONTROL = "fp32-finetuned"
"""The ``--kinds`` entry of the control run (:func:`finetuned_float_accuracy`)."""
STE_EPOCHS, STE_LR = int(BINARY_TRAIN_DEFAULTS["epochs"]), float(BINARY_TRAIN_DEFAULTS["lr"])
"""The straight-through budget: the ``binarize`` / ``ternarize`` defaults."""

_FRESH_LOADER = r"""
import sys
import torch
from safetensors.torch import load_file, save_file
import torchslim
torch.set_num_threads(1)
model = torchslim.load(sys.argv[1])
with torch.no_grad():
    out = model(load_file(sys.argv[2])["x"]).contiguous()
save_file({"y": out}, sys.argv[3])
"""


def accuracy(model: nn.Module, loader: Any) -> float:
    correct = total = 0
    model.eval()
    with torch.no_grad():
        for x, y in loader:
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    return correct / max(total, 1)


def model_file_bytes(directory: Path) -> int:
    return sum((directory / name).stat().st_size for name in MODEL_FILES)


def goal_met(ratio: float, drop: float, reload_ok: bool, kind: str) -> bool:
    min_ratio, max_drop = GOALS[kind]
    return reload_ok and (min_ratio is None or ratio >= min_ratio) and (max_drop is None or drop <= max_drop)


def make_config(kind: str, *, epochs: int, lr: float, train_samples_cap: int | None = None) -> BinaryWeightsConfig:
    train = TrainConfig(epochs=epochs, lr=lr, schedule="cosine", max_steps=train_samples_cap)
    if kind in ("binary", "binary-act"):
        return Binarize(train=train, activations="binary" if kind == "binary-act" else "float")
    if kind in ("ternary", "ttq"):
        return Ternarize(train=train, trained_scales=kind == "ttq")
    raise ValueError(f"kind must be 'binary', 'binary-act', 'ternary' or 'ttq', got {kind!r}")


def finetuned_float_accuracy(model: nn.Module, splits: DataSplits, *, seed: int, epochs: int, lr: float) -> float:
    """The control: the fp32 model trained for the same extra epochs (same optimizer and schedule)
    as the straight-through run, so a drop is not hidden by the extra training."""
    import copy

    from torchslim.train import train

    control = copy.deepcopy(model)
    train(control, splits.train, config=TrainConfig(epochs=epochs, lr=lr, schedule="cosine"), seed=seed, quiet=True)
    return accuracy(control, splits.test)


def levels_per_channel(model: nn.Module) -> dict[str, int]:
    """Per binarized / ternarized layer, the largest number of distinct stored weight values in an output channel."""
    out: dict[str, int] = {}
    for name, layer in compressed_layers(model):
        spec = getattr(layer, "weight_spec", None)
        if spec is None or spec.levels == "uniform":
            continue
        w = layer.effective_weight().detach()
        out[name] = max(int(torch.unique(row).numel()) for row in w.reshape(w.shape[0], -1))
    return out


def fresh_process_identical(directory: Path, x: torch.Tensor, expected: torch.Tensor, tmp: Path) -> bool:
    from safetensors.torch import load_file, save_file

    save_file({"x": x.contiguous()}, str(tmp / "x.safetensors"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT.parent / "src")}
    done = subprocess.run(
        [sys.executable, "-c", _FRESH_LOADER, str(directory), str(tmp / "x.safetensors"), str(tmp / "y.safetensors")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if done.returncode != 0:
        log(done.stderr[-2000:])
        return False
    return bool(torch.equal(load_file(str(tmp / "y.safetensors"))["y"], expected))


def onnx_facts(model: nn.Module, path: Path, loader: Any) -> dict[str, Any]:
    import numpy as np
    import onnxruntime as ort

    from torchslim.deploy import export_onnx

    x0 = next(iter(loader))[0]
    export_onnx(model, path, x0[:1])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    correct = total = 0
    max_diff = 0.0
    model.eval()
    for x, y in loader:
        got = session.run(None, {name: x.numpy()})[0]
        with torch.no_grad():
            ref = model(x).numpy()
        max_diff = max(max_diff, float(np.abs(got - ref).max()))
        correct += int((got.argmax(1) == y.numpy()).sum())
        total += len(y)
    return {"bytes": path.stat().st_size, "accuracy": correct / max(total, 1), "max_abs_diff": max_diff}


def run_binary(
    model: nn.Module,
    splits: DataSplits,
    *,
    seed: int = 0,
    kind: str = "binary",
    epochs: int = STE_EPOCHS,
    lr: float = STE_LR,
    max_steps: int | None = None,
    float_accuracy: float | None = None,
) -> dict[str, Any]:
    """Binarize (``binary``) or ternarize (``ternary`` TWN, ``ttq``) the trained `model` with STE
    training on ``splits.train``; measure bytes on disk, test accuracy, fresh-process reload and ONNX.

    Returns a dict with ``fp32_bytes`` (the fp32 ``model.safetensors``), ``bytes`` (the compressed
    artifact's model files), ``ratio``, ``float_accuracy``, ``accuracy``, ``drop_points``,
    ``reload_identical``, ``onnx`` (bytes, accuracy, max_abs_diff), ``levels_per_channel``,
    ``goal`` and ``ok``. `model` is not changed.
    """
    from torchslim.io import save

    config = make_config(kind, epochs=epochs, lr=lr, train_samples_cap=max_steps)
    if float_accuracy is None:
        float_accuracy = accuracy(model, splits.test)
    context = Context(data=splits, seed=seed, quiet=True, threads=1)
    t0 = time.perf_counter()
    outcome = binary_weights_handler(model, config, targets=None, context=context)
    seconds = time.perf_counter() - t0
    slim = outcome.model.eval()
    acc = accuracy(slim, splits.test)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        fp32_bytes = (save(model, tmp / "fp32") / "model.safetensors").stat().st_size
        directory = save(slim, tmp / kind)
        nbytes = model_file_bytes(directory)
        x = next(iter(splits.test))[0][:64]
        with torch.no_grad():
            expected = slim(x)
        reload_ok = fresh_process_identical(directory, x, expected, tmp)
        onnx = onnx_facts(slim, tmp / f"{kind}.onnx", splits.test)
    ratio = fp32_bytes / nbytes
    drop = 100.0 * (float_accuracy - acc)
    min_ratio, max_drop = GOALS[kind]
    return {
        "kind": kind,
        "config": config.to_dict(),
        "fp32_bytes": fp32_bytes,
        "bytes": nbytes,
        "ratio": ratio,
        "float_accuracy": float_accuracy,
        "accuracy": acc,
        "drop_points": drop,
        "reload_identical": reload_ok,
        "onnx": onnx,
        "levels_per_channel": levels_per_channel(slim),
        "layers": outcome.layers,
        "info": {k: v for k, v in outcome.info.items() if k != "layers"},
        "seconds": seconds,
        "goal": {"min_ratio": min_ratio, "max_drop_points": max_drop},
        "ok": goal_met(ratio, drop, reload_ok, kind),
    }


# ---- standalone ---------------------------------------------------------------------------------
def trained_float_model(splits: DataSplits, *, epochs: int, cache: Path | None, seed: int) -> nn.Module:
    from torchslim.io import load, save
    from torchslim.models import build_model
    from torchslim.train import train

    if cache is not None and cache.exists():
        log(f"  loading cached fmnist-cnn from {cache}")
        return load(cache)
    model = build_model("fmnist-cnn", seed=seed)
    log(f"  training fmnist-cnn for {epochs} epoch(s)")
    train(model, splits.train, config=TrainConfig(epochs=epochs, lr=1e-3), seed=seed, quiet=True)
    model.eval()
    if cache is not None:
        save(model, cache)
    return model


def _control_cell(r: dict[str, Any], control: dict[str, Any] | None) -> str:
    if not control or "accuracy" not in control or control.get("epochs") != r["config"]["train"]["epochs"]:
        return ""
    return f"{100 * (control['accuracy'] - r['accuracy']):.2f}"


def markdown(results: dict[str, Any]) -> str:
    # long: one table with a row per kind, the control line and the notes under it
    lines = ["# Binary and ternary fmnist-cnn (issue 18, part B)", "", env_line(results["env"]), ""]
    rows = []
    control = results["sections"].get(CONTROL)
    for kind, r in results["sections"].items():
        if kind == CONTROL:
            continue
        if "error" in r:
            rows.append([kind, r["error"], "", "", "", "", "", "", "", ""])
            continue
        min_ratio, max_drop = GOALS[kind]
        r["goal"] = {"min_ratio": min_ratio, "max_drop_points": max_drop}
        r["ok"] = goal_met(r["ratio"], r["drop_points"], r["reload_identical"], kind)
        rows.append(
            [
                kind,
                f"{r['fp32_bytes']:,}",
                f"{r['bytes']:,}",
                f"{r['ratio']:.1f}x" + (f" (goal >= {min_ratio:.0f}x)" if min_ratio is not None else " (no goal)"),
                f"{100 * r['float_accuracy']:.2f}%",
                f"{100 * r['accuracy']:.2f}%",
                f"{r['drop_points']:.2f}" + (f" (goal <= {max_drop})" if max_drop is not None else " (no goal)"),
                _control_cell(r, control),
                f"{r['reload_identical']}",
                f"{100 * r['onnx']['accuracy']:.2f}% / {r['onnx']['max_abs_diff']:.2g}",
            ]
        )
    lines += md_table(
        [
            "kind",
            "fp32 safetensors bytes",
            "artifact bytes",
            "smaller",
            "fp32 acc",
            "acc",
            "drop (points)",
            "drop vs fp32 fine-tuned alike",
            "fresh-process reload identical",
            "onnxruntime acc / max |diff|",
        ],
        rows,
    )
    if control and "accuracy" in control:
        lines += [
            "",
            f"Control: the same fp32 model trained {control['epochs']} more epoch(s) with the straight-through runs' "
            f"optimizer and schedule reaches {100 * control['accuracy']:.2f}%; the column 'drop vs fp32 fine-tuned "
            "alike' is each kind's drop against it (the straight-through epoch also trains the model further).",
        ]
    lines += [
        "",
        "Artifact bytes: `model.safetensors` + `torchslim.json` as `torchslim.save` writes them (1-bit codes 8 per "
        "byte, ternary 4 per byte, float32 per-channel scales and biases; first and last layers 8-bit). The ONNX "
        "file keeps int8 codes with DequantizeLinear (TTQ: float weights), so onnxruntime gains no size or speed "
        "from 1-2 bits: the gain is the artifact on disk. `binary-act` also binarizes the inputs of the binarized "
        "layers (a float32 threshold per input feature, 3,136 of them for `fc.fc1`, plus one scale a layer: "
        "the extra bytes) and evaluates them as signs in onnxruntime (Where), not with an XNOR-popcount kernel.",
        "",
        f"Command: `{results['command']}`",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    from torchslim.data import load_splits

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="8k training images, 1 float and 1 STE epoch")
    parser.add_argument("--kinds", default=f"binary,ternary,ttq,binary-act,{CONTROL}")
    parser.add_argument("--epochs", type=int, default=None, help=f"STE epochs (default {STE_EPOCHS}; quick 1)")
    parser.add_argument("--lr", type=float, default=STE_LR)
    parser.add_argument("--float-epochs", type=int, default=None, help="fp32 training epochs (default 3; quick 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    parser.add_argument("--merge", action="store_true", help="keep the other kinds of an existing results file")
    parser.add_argument("--render", action="store_true", help="only rewrite the .md (and goals) from the .json")
    default_cache = Path(os.environ.get("TORCHSLIM_CACHE") or "~/.cache/torchslim").expanduser() / "benchmarks"
    parser.add_argument("--cache", type=Path, default=default_cache)
    args = parser.parse_args()
    stem = "nonuniform_binary" + ("_quick" if args.quick else "")
    if args.render:
        results = json.loads((args.out / f"{stem}.json").read_text(encoding="utf-8"))
        write_results(args.out, stem, results, markdown(results))
        return
    torch.set_num_threads(1)
    epochs = args.epochs if args.epochs is not None else (1 if args.quick else STE_EPOCHS)
    float_epochs = args.float_epochs if args.float_epochs is not None else (1 if args.quick else 3)
    splits = load_splits("fashion-mnist", batch_size=128, seed=args.seed, train_samples=8000 if args.quick else None)
    tag = f"binary-fmnist-cnn-e{float_epochs}-s{args.seed}" + ("-quick" if args.quick else "")
    model = trained_float_model(splits, epochs=float_epochs, cache=args.cache / tag, seed=args.seed)
    results = new_results(quick=args.quick, threads=1)
    results["command"] = "python benchmarks/_nonuniform_binary.py " + " ".join(sys.argv[1:])
    float_acc = accuracy(model, splits.test)
    for kind in [k.strip() for k in args.kinds.split(",") if k.strip()]:
        log(f"{kind} ...")
        if kind == CONTROL:
            acc = finetuned_float_accuracy(model, splits, seed=args.seed, epochs=epochs, lr=args.lr)
            results["sections"][CONTROL] = {"accuracy": acc, "epochs": epochs, "lr": args.lr}
            log(f"  fp32 trained {epochs} more epoch(s): {100 * acc:.2f}%")
            continue
        try:
            r = run_binary(
                model, splits, seed=args.seed, kind=kind, epochs=epochs, lr=args.lr, float_accuracy=float_acc
            )
        except Exception as exc:  # noqa: BLE001 - one failing kind must not hide the others
            results["sections"][kind] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        results["sections"][kind] = r
        log(
            f"  {kind}: {r['bytes']:,} B ({r['ratio']:.1f}x smaller), acc {100 * r['accuracy']:.2f}% "
            f"(fp32 {100 * r['float_accuracy']:.2f}%, drop {r['drop_points']:.2f}), reload {r['reload_identical']}, "
            f"onnx {100 * r['onnx']['accuracy']:.2f}% max|diff| {r['onnx']['max_abs_diff']:.2g}, {r['seconds']:.0f}s"
        )
    if args.merge and (args.out / f"{stem}.json").exists():
        earlier = json.loads((args.out / f"{stem}.json").read_text(encoding="utf-8"))
        results["sections"] = {**earlier.get("sections", {}), **results["sections"]}
        results["command"] = "; ".join(dict.fromkeys([earlier.get("command", ""), results["command"]]))
    write_results(args.out, stem, results, markdown(results))
    log(f"wrote {args.out / stem}.json and .md")


if __name__ == "__main__":
    main()
