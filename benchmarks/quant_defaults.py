"""The measurement behind ``Quantize.bias_correction``'s default: int8 PTQ with it off vs the default.

    python benchmarks/quant_defaults.py            # all four models (about 6 minutes with cached models)
    python benchmarks/quant_defaults.py --only efficientnet-lite0

Everything else is ``Quantize()``'s default (static int8 inputs where calibration data is given,
per-channel weights, the integer graph). Metrics, each the one a user of that model looks at:

* ``efficientnet-lite0`` (pretrained, ImageNet): top-1 agreement and mean logit cosine with the fp32
  model on 128 held-out crops of the offline photos, 64 calibration crops (as in quantization.py);
* ``fmnist-cnn`` / ``fmnist-resnet`` (trained here, cached like quantization.py's): test accuracy on
  the 10,000 Fashion-MNIST test images, top-1 agreement and output SQNR against the fp32 model,
  512 calibration samples; ``fmnist-cnn+prune-kd`` is fmnist-cnn after the demo recipe's first two
  steps (50% of the channels removed, 1 epoch of distillation), the model ``make demo`` quantizes;
* ``minilm-l6`` (pretrained sentence embedder, dynamic int8 Linear inputs, default per-tensor): mean cosine
  to the fp32 embeddings of 256 tweets.

Bias correction (Nagel et al. 2019) subtracts the expected output shift ``(W_hat - W) E[x]`` from each
layer's bias. Results go to ``benchmarks/results/quant_defaults.json`` and ``.md``. One thread.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))
sys.path.insert(0, str(ROOT))

from _harness import env_line, log, md_table, new_results, write_results  # noqa: E402

PRUNED_SUFFIX = "+prune-kd"
"""A model name with this suffix is that model after the demo recipe's prune and distill steps."""
MODELS = ("efficientnet-lite0", "fmnist-cnn", "fmnist-cnn" + PRUNED_SUFFIX, "fmnist-resnet", "minilm-l6")
SETTINGS = {"off": {"bias_correction": False}, "default (auto)": {}}
"""Quantize keyword overrides per compared setting; ``{}`` is the default the user gets."""


def _quantize(model: nn.Module, context: Any, **overrides: Any) -> tuple[nn.Module, bool]:
    """The default PTQ of `model` with `overrides`; and whether bias correction ran (from the report)."""
    from torchslim.quantization import Quantize, quantize_handler

    calibration = overrides.pop("calibration_samples", 512)
    outcome = quantize_handler(
        model, Quantize(calibration_samples=calibration, **overrides), targets=None, context=context
    )
    return outcome.model.eval(), bool(outcome.info.get("bias_correction"))


def _efficientnet(args: argparse.Namespace) -> tuple[dict[str, Any], Callable[..., dict[str, Any]]]:
    from quantization import _crops
    from torchslim.core import Context, DataSplits
    from torchslim.measure.agreement import top_k_agreement
    from torchslim.models import build_model

    model = build_model("efficientnet-lite0").eval()
    calibration, held_out = _crops(64, seed=0, held_out=False), _crops(128, seed=1, held_out=True)

    def logits(m: nn.Module) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([m(held_out[i : i + 16]) for i in range(0, len(held_out), 16)])

    reference = logits(model)
    batches = [(calibration[i : i + 8], None) for i in range(0, len(calibration), 8)]
    context = Context(data=DataSplits(calibration=batches), seed=0, quiet=True)

    def score(**overrides: Any) -> dict[str, Any]:
        quantized, corrected = _quantize(model, context, calibration_samples=64, **overrides)
        out = logits(quantized)
        return {
            "top1_agreement": top_k_agreement(reference, out, k=1),
            "cosine": float(nn.functional.cosine_similarity(out, reference).mean()),
            "bias_correction": corrected,
        }

    return {"metric": "top-1 agreement with fp32 (128 held-out crops); cosine", "fp32": 1.0}, score


def _pruned_distilled(model: nn.Module, splits: Any) -> nn.Module:
    """`model` after the first two steps of the demo's recipe ``prune-kd-int8`` (50% channels, 1 epoch of KD)."""
    from torchslim.api import compress, load_recipe
    from torchslim.core.recipe import Recipe, apply_overrides

    steps = apply_overrides(load_recipe("prune-kd-int8").to_dict(), ["steps.1.config.train.epochs=1"])
    steps["steps"] = steps["steps"][:2]
    result = compress(model, splits, recipe=Recipe.from_dict(steps), seed=0, quiet=True, batch_size=64)
    return result.model.eval()


def _fmnist(args: argparse.Namespace, name: str) -> tuple[dict[str, Any], Callable[..., dict[str, Any]]]:
    from quantization import accuracy_torch, trained_fmnist_cnn
    from torchslim.core import Context
    from torchslim.data import load_splits
    from torchslim.measure.agreement import sqnr_db, top_k_agreement

    splits = load_splits("fashion-mnist", batch_size=128, seed=0)
    base = name.removesuffix(PRUNED_SUFFIX)
    model = trained_fmnist_cnn(args, splits, name=base, epochs=3 if base == "fmnist-cnn" else 2)
    if name.endswith(PRUNED_SUFFIX):
        model = _pruned_distilled(model, splits)
    context = Context(data=splits, seed=0, quiet=True)
    images = torch.cat([x for x, _ in splits.test])

    def logits(m: nn.Module) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([m(images[i : i + 512]) for i in range(0, len(images), 512)])

    reference = logits(model)

    def score(**overrides: Any) -> dict[str, Any]:
        quantized, corrected = _quantize(model, context, **overrides)
        out = logits(quantized)
        return {
            "accuracy": accuracy_torch(quantized, splits.test),
            "top1_agreement": top_k_agreement(reference, out, k=1),
            "sqnr_db": sqnr_db(reference, out),
            "bias_correction": corrected,
        }

    metric = "test accuracy (10,000 images); top-1 agreement with fp32; output SQNR dB"
    return {"metric": metric, "fp32": accuracy_torch(model, splits.test)}, score


def _minilm(args: argparse.Namespace) -> tuple[dict[str, Any], Callable[..., dict[str, Any]]]:
    from quantization import _embed
    from torchslim.core import Context
    from torchslim.data import load_splits
    from torchslim.models import build_model

    model = build_model("minilm-l6").eval()
    splits = load_splits("tweets", batch_size=32, eval_samples=256, seed=0)
    texts = [text for batch, _ in splits.test for text in batch][:256]
    reference = _embed(model, texts)
    context = Context(data=splits, seed=0, quiet=True)

    def score(**overrides: Any) -> dict[str, Any]:
        quantized, corrected = _quantize(model, context, **overrides)
        cosine = nn.functional.cosine_similarity(reference, _embed(quantized, texts)).mean()
        return {"cosine": float(cosine), "bias_correction": corrected}

    return {"metric": "mean cosine to fp32 embeddings (256 tweets)", "fp32": 1.0}, score


def run_model(args: argparse.Namespace, name: str) -> dict[str, Any]:
    if name == "efficientnet-lite0":
        row, score = _efficientnet(args)
    elif name == "minilm-l6":
        row, score = _minilm(args)
    else:
        row, score = _fmnist(args, name)
    row = {"model": name, **row}
    for label, overrides in SETTINGS.items():
        started = time.perf_counter()
        row[label] = {**score(**overrides), "seconds": round(time.perf_counter() - started, 1)}
        log(f"{name} {label}: {row[label]}")
    return row


def _value(result: dict[str, Any]) -> str:
    """The row's metric(s), in the order the metric column names them."""
    keys = ("accuracy", "top1_agreement", "sqnr_db") if "accuracy" in result else ("top1_agreement", "cosine")
    return "; ".join(f"{result[k]:.1f}" if k == "sqnr_db" else f"{result[k]:.4f}" for k in keys if k in result)


def markdown(results: dict[str, Any]) -> str:
    rows = [
        [
            row["model"],
            row["metric"],
            f"{row['fp32']:.4f}",
            *(_value(row[label]) for label in SETTINGS),
            "yes" if row["default (auto)"]["bias_correction"] else "no",
        ]
        for row in results["rows"]
    ]
    headers = ["model", "metric", "fp32", "bias correction off", "default (auto)", "default ran bias correction"]
    return "\n".join(
        [
            "# Quantize defaults: bias correction off vs the default (int8 PTQ)",
            "",
            env_line(results["env"]),
            "",
            *md_table(headers, rows),
            "",
            "Reproduce: `python benchmarks/quant_defaults.py`. One thread; everything else `Quantize()`'s default.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=MODELS, nargs="+", default=list(MODELS))
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    default_cache = Path(os.environ.get("TORCHSLIM_CACHE") or "~/.cache/torchslim").expanduser() / "benchmarks"
    parser.add_argument("--cache", type=Path, default=default_cache, help="where trained models are kept")
    parser.add_argument("--no-cache", action="store_true", help="always train the Fashion-MNIST models")
    args = parser.parse_args(argv)
    args.quick = False  # trained_fmnist_cnn reads it: the full training split
    torch.set_num_threads(1)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    results: dict[str, Any] = new_results(quick=False, threads=1, settings=settings)
    results["rows"] = []
    started = time.perf_counter()
    for name in args.only:
        results["rows"].append(run_model(args, name))
        results["seconds"] = round(time.perf_counter() - started, 1)
        write_results(args.out, "quant_defaults", results, markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
