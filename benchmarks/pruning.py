"""Pruning benchmark (issue 4, "Must show"): every comparison side by side in one run.

    python benchmarks/pruning.py --quick     # smoke run, small data, < 3 minutes on 2 cores
    python benchmarks/pruning.py             # full run (minutes to tens of minutes on 2 cores)

Sections (``--only lenet,resnet,...`` runs a subset):

* ``lenet``: LeNet-300-100 on Fashion-MNIST, 90% global unstructured sparsity with fine-tuning
  (torchslim, iterative magnitude pruning) next to ``torch.nn.utils.prune`` at the same sparsity and
  fine-tuning budget: test accuracy, bytes on disk, latency (batch 64, A/B alternation).
* ``resnet``: fmnist-resnet, 50% channel pruning + fine-tuning: torchslim next to raw Torch-Pruning
  (MetaPruner, same importance and ratio) and ``torch.nn.utils.prune.ln_structured`` (zeroed
  filters): accuracy, params, MACs, bytes, latency ratio against dense measured in the same run,
  and whether the latency gain reaches 0.8x the MAC reduction.
* ``efficientnet``: EfficientNet-Lite0 (ImageNet weights), 30% channel pruning without fine-tuning:
  params, forward, ONNX export + onnxruntime check, top-1 agreement with the original on the bundled
  photos and on upsampled Fashion-MNIST images.
* ``minilm``: MiniLM-L6, 50% of FFN neurons and 4 of 12 heads per layer removed physically:
  params, latency ratios (batch 1 and 32 at 128 tokens), embedding cosine to the original.
* ``bad_input``: ratio outside [0, 1), targets matching nothing, an untraceable model, a cut that
  would remove every channel: the error raised and whether the model stayed unchanged.

Writes ``benchmarks/results/pruning[_quick].json`` and ``.md``. Latency ratios are medians of
rounds that time dense and every variant in rotating order (``multi_latency`` through
``_harness.rotating_latency``, two-way cases too) at a fixed thread count (default 2). Trained dense
baselines are cached as torchslim artifacts in ``${TORCHSLIM_CACHE:-~/.cache/torchslim}/benchmarks``
(``--no-cache`` retrains); the full run trains LeNet-300-100 for 10 epochs and fmnist-resnet for 4
on the whole Fashion-MNIST train split the first time.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))
sys.path.insert(0, str(ROOT))

from _harness import env_line, log, new_results, rotating_latency, run_sections, torch_fn, write_results  # noqa: E402
from torchslim.core import Context, Targets  # noqa: E402
from torchslim.core.plans import model_plan  # noqa: E402
from torchslim.core.technique import TECHNIQUES  # noqa: E402

# ------------------------------------------------------------------------------------------------
# helpers


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def nonzero_params(model: nn.Module) -> int:
    """Non-zero weights and biases, masks applied."""
    from torchslim.io.artifact import baked_state_dict

    return sum(
        int(torch.count_nonzero(t))
        for k, t in baked_state_dict(model).items()
        if k.rsplit(".", 1)[-1] in ("weight", "bias")
    )


def macs(model: nn.Module, x: Any) -> int:
    from torchslim.measure.macs import count_macs

    return int(count_macs(model, x).total)


def accuracy(model: nn.Module, loader: Any) -> float:
    from torchslim.measure.accuracy import evaluate

    return float(evaluate(model, loader).accuracy)


def artifact_bytes(model: nn.Module, *, spec: dict | None = None) -> int:
    from torchslim.io import save
    from torchslim.measure.size import directory_bytes

    with tempfile.TemporaryDirectory(prefix="bench-pruning-") as tmp:
        return int(directory_bytes(save(model, Path(tmp) / "a", spec=spec)))


def torch_save_bytes(model: nn.Module) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-pruning-") as tmp:
        path = Path(tmp) / "state.pt"
        torch.save(model.state_dict(), path)
        return path.stat().st_size


def call(model: nn.Module, x: Any) -> Callable[[], Any]:
    model.eval()
    return torch_fn(model, x)


def ab_latency(dense: nn.Module, other: nn.Module, x: Any, *, rounds: int, threads: int) -> dict[str, float]:
    """Alternating A/B timing (the harness's rotating rounds); ``ratio = other / dense`` (below 1:
    faster than dense)."""
    return multi_latency(dense, {"other": other}, x, rounds=rounds, threads=threads)["other"]


def multi_latency(
    dense: nn.Module, variants: dict[str, nn.Module], x: Any, *, rounds: int, threads: int
) -> dict[str, dict[str, float]]:
    """Time dense and every variant in the same rounds, rotating the order each round.

    ``ratio`` is the median over rounds of ``variant_ms / dense_ms`` within the round (load that
    changes between rounds, e.g. other processes on a shared machine, cancels out); ``ms`` are
    medians of each model's own times. ``speedup = 1 / ratio``.
    """
    fns = {"dense": call(dense, x), **{k: call(m, x) for k, m in variants.items()}}
    lat = rotating_latency(fns, "dense", rounds=rounds, threads=threads)
    return {
        k: {"dense_ms": lat["dense"]["ms"], "ms": lat[k]["ms"], "ratio": lat[k]["ratio"], "speedup": lat[k]["speedup"]}
        for k in variants
    }


def dense_baseline(
    name: str, args: argparse.Namespace, splits: Any, *, epochs: int, lr: float
) -> tuple[nn.Module, bool]:
    """Build and train the dense model, or reuse the copy cached by an earlier run with the same settings."""
    from torchslim.io import load, read_manifest, save
    from torchslim.models import build_model

    key = {"model": name, "epochs": epochs, "lr": lr, "seed": args.seed, "train_samples": len(splits.train.dataset)}
    directory = args.cache / f"{name}-{'quick' if args.quick else 'full'}"
    if not args.no_cache and (directory / "torchslim.json").is_file():
        try:
            if read_manifest(directory).get("config", {}).get("bench_baseline") == key:
                return load(directory), True
        except Exception:  # noqa: BLE001 - a broken cache is rebuilt
            pass
    model = build_model(name, seed=args.seed)
    train_model(model, splits.train, epochs=epochs, lr=lr, seed=args.seed)
    if not args.no_cache:
        save(model, directory, config={"bench_baseline": key})
    return model, False


def train_model(model: nn.Module, loader: Any, *, epochs: int, lr: float, seed: int) -> float:
    from torchslim.train import TrainConfig, train

    started = time.perf_counter()
    train(model, loader, config=TrainConfig(epochs=epochs, lr=lr), seed=seed, quiet=True)
    model.eval()
    return time.perf_counter() - started


def run_technique(model: nn.Module, config: Any, *, context: Context, targets: Targets | None = None) -> Any:
    return TECHNIQUES.handler_for(config)(model, config, targets=targets, context=context)


def splits_for(args: argparse.Namespace, batch_size: int = 128, quick_train: int = 2048) -> Any:
    from torchslim.data import load_splits

    if args.quick:
        return load_splits(
            "fashion-mnist", batch_size=batch_size, train_samples=quick_train, eval_samples=512, seed=args.seed
        )
    return load_splits("fashion-mnist", batch_size=batch_size, seed=args.seed)


# ------------------------------------------------------------------------------------------------
# sections


def section_lenet(args: argparse.Namespace) -> dict[str, Any]:
    from torch.nn.utils import prune as torch_prune

    from torchslim.pruning import MagnitudePruning, remove_masks
    from torchslim.train import TrainConfig

    splits = splits_for(args)
    dense_epochs, rounds, tune_epochs = (1, 3, 1) if args.quick else (10, 3, 2)
    model, cached = dense_baseline("lenet-300-100", args, splits, epochs=dense_epochs, lr=1e-3)
    log(f"lenet: dense baseline {'from the cache' if cached else 'trained'}")
    dense_acc = accuracy(model, splits.test)
    x = torch.randn(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    context = Context(data=splits, seed=args.seed, quiet=True)

    config = MagnitudePruning(
        sparsity=0.9, scope="global", schedule="iterative", steps=rounds, train=TrainConfig(epochs=tune_epochs, lr=5e-4)
    )
    started = time.perf_counter()
    out = run_technique(model, config, context=context)
    ts = out.model.eval()
    ts_secs = time.perf_counter() - started
    ts_baked = remove_masks(copy.deepcopy(ts))
    log(f"lenet: torchslim pruned + fine-tuned in {ts_secs:.0f}s")

    peer = copy.deepcopy(model)
    weights = [(m, "weight") for m in peer.modules() if isinstance(m, nn.Linear)]
    torch_prune.global_unstructured(weights, pruning_method=torch_prune.L1Unstructured, amount=0.9)
    train_model(peer, splits.train, epochs=rounds * tune_epochs, lr=5e-4, seed=args.seed)
    log("lenet: torch.nn.utils.prune pruned + fine-tuned")

    dense_bytes = artifact_bytes(model)
    latency = multi_latency(
        model, {"baked": ts_baked, "masked": ts, "peer": peer}, x, rounds=args.rounds, threads=args.threads
    )
    rows = {
        "dense": {
            "accuracy": dense_acc,
            "params": params(model),
            "nonzero": nonzero_params(model),
            "artifact_bytes": dense_bytes,
            "torch_save_bytes": torch_save_bytes(model),
            "latency": {"ms": None, "ratio": 1.0},
        },
        "torchslim magnitude 90% global (iterative)": {
            "accuracy": accuracy(ts, splits.test),
            "params": params(ts_baked),
            "nonzero": nonzero_params(ts),
            "artifact_bytes": artifact_bytes(ts),
            "torch_save_bytes": torch_save_bytes(ts),
            "latency": latency["baked"],
            "latency_masked": latency["masked"],
            "sparsity": out.info["sparsity"],
        },
        "torch.nn.utils.prune global L1 90%": {
            "accuracy": accuracy(peer, splits.test),
            "params": params(model),
            "nonzero": nonzero_params(peer),
            "artifact_bytes": artifact_bytes(peer),
            "torch_save_bytes": torch_save_bytes(peer),
            "latency": latency["peer"],
        },
    }
    ts_row = rows["torchslim magnitude 90% global (iterative)"]
    checks = {
        "accuracy within 0.5 points of dense": dense_acc - ts_row["accuracy"] <= 0.005,
        "artifact at most 1/5 of dense": ts_row["artifact_bytes"] <= dense_bytes / 5,
    }
    return {
        "rows": rows,
        "checks": checks,
        "settings": {
            "dense_epochs": dense_epochs,
            "rounds": rounds,
            "finetune_epochs_per_round": tune_epochs,
            "test_samples": len(splits.test.dataset),
            "train_samples": len(splits.train.dataset),
        },
        "note": "unstructured masks: same dense MACs, so no speed-up is expected; the gain is bytes on disk",
    }


def section_resnet(args: argparse.Namespace) -> dict[str, Any]:
    import torch_pruning as tp
    from torch.nn.utils import prune as torch_prune

    from torchslim.models import example_input
    from torchslim.pruning import ChannelPruning
    from torchslim.train import TrainConfig

    splits = splits_for(args, quick_train=1024)
    dense_epochs, tune_epochs = (2, 1) if args.quick else (4, 2)
    model, cached = dense_baseline("fmnist-resnet", args, splits, epochs=dense_epochs, lr=1e-3)
    log(f"resnet: dense baseline {'from the cache' if cached else 'trained'}")
    x = example_input(model, batch_size=64)
    trace_x = example_input(model, batch_size=2)
    dense_acc = accuracy(model, splits.test)
    dense_macs = macs(model, x)

    # torchslim
    config = ChannelPruning(ratio=0.5, importance="l1", train=TrainConfig(epochs=tune_epochs, lr=5e-4))
    out = run_technique(model, config, context=Context(data=splits, seed=args.seed, quiet=True, example_input=trace_x))
    ts = out.model.eval()
    log("resnet: torchslim pruned + fine-tuned")

    # raw Torch-Pruning, same ratio and importance, same fine-tuning
    raw = copy.deepcopy(model)
    pruner = tp.pruner.MetaPruner(
        raw,
        trace_x,
        importance=tp.importance.GroupMagnitudeImportance(p=1),
        pruning_ratio=0.5,
        ignored_layers=[raw.classifier],
    )
    pruner.step()
    train_model(raw, splits.train, epochs=tune_epochs, lr=5e-4, seed=args.seed)
    log("resnet: Torch-Pruning pruned + fine-tuned")

    # torch.nn.utils.prune: zeroed filters (L1 structured), same fine-tuning
    zeroed = copy.deepcopy(model)
    for m in zeroed.modules():
        if isinstance(m, nn.Conv2d):
            torch_prune.ln_structured(m, "weight", amount=0.5, n=1, dim=0)
    train_model(zeroed, splits.train, epochs=tune_epochs, lr=5e-4, seed=args.seed)
    log("resnet: torch.nn.utils.prune pruned + fine-tuned")

    variants = {
        "torchslim channel 50%": (ts, None),
        "Torch-Pruning MetaPruner 50%": (raw, {}),
        "torch.nn.utils.prune ln_structured 50%": (zeroed, {}),
    }
    latency = multi_latency(
        model, {k: m for k, (m, _) in variants.items()}, x, rounds=args.rounds, threads=args.threads
    )
    rows: dict[str, Any] = {}
    for label, (m, spec) in {"dense": (model, None), **variants}.items():
        row = {
            "accuracy": accuracy(m, splits.test),
            "params": params(m),
            "macs": macs(m, x),
            "artifact_bytes": artifact_bytes(m, spec=spec),
        }
        row["mac_ratio"] = row["macs"] / dense_macs
        if m is not model:
            row["latency"] = latency[label]
            gain, mac_gain = row["latency"]["speedup"], dense_macs / max(row["macs"], 1)
            row["latency_gain_over_mac_gain"] = gain / mac_gain
            row["verdict"] = "faster" if gain > 1.05 else "NOT faster than dense"
        rows[label] = row
    ts_row = rows["torchslim channel 50%"]
    checks = {
        "MACs <= 0.5x": ts_row["mac_ratio"] <= 0.5,
        "latency (batch 64) <= 0.6x of dense": ts_row["latency"]["ratio"] <= 0.6,
        "accuracy within 1 point of dense": dense_acc - ts_row["accuracy"] <= 0.01,
        "latency gain >= 0.8x MAC reduction": ts_row["latency_gain_over_mac_gain"] >= 0.8,
    }
    return {
        "rows": rows,
        "checks": checks,
        "settings": {
            "dense_epochs": dense_epochs,
            "finetune_epochs": tune_epochs,
            "batch": 64,
            "threads": args.threads,
        },
    }


def section_efficientnet(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from torchslim.data.fashion_mnist import MEAN, STD
    from torchslim.models import build_model, efficientnet_preprocess, example_input, sample_photos
    from torchslim.pruning import prune_channels

    model = build_model("efficientnet-lite0", pretrained=True)
    x = example_input(model)
    out = prune_channels(model, x, ratio=0.3)
    pruned = out.model.eval()
    result: dict[str, Any] = {
        "params_before": params(model),
        "params_after": params(pruned),
        "macs_ratio": macs(pruned, x) / macs(model, x),
    }
    with torch.no_grad():
        result["forward_shape"] = list(pruned(x).shape)

    # ONNX export and onnxruntime
    try:
        import onnxruntime as ort

        with tempfile.TemporaryDirectory(prefix="bench-onnx-") as tmp:
            path = Path(tmp) / "pruned.onnx"
            torch.onnx.export(pruned, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"])
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            ort_out = session.run(None, {"x": x.numpy()})[0]
            with torch.no_grad():
                ref = pruned(x).numpy()
            result["onnx"] = {
                "ok": True,
                "bytes": path.stat().st_size,
                "max_abs_diff": float(np.abs(ort_out - ref).max()),
            }
    except Exception as exc:  # noqa: BLE001 - reported, not fatal
        result["onnx"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}

    def agree(batch: torch.Tensor) -> dict[str, Any]:
        with torch.no_grad():
            a, b = model(batch).argmax(1), pruned(batch).argmax(1)
        return {"images": int(batch.shape[0]), "top1_agreement": float((a == b).float().mean())}

    photos = sample_photos()
    batch = torch.stack([efficientnet_preprocess(img) for img in photos.values()])
    result["photos"] = agree(batch)
    with torch.no_grad():
        result["photos"]["original_top1"] = model(batch).argmax(1).tolist()
        result["photos"]["pruned_top1"] = pruned(batch).argmax(1).tolist()
    from torchslim.data import load_splits

    n = 16 if args.quick else 256
    fm = load_splits("fashion-mnist", batch_size=n, eval_samples=n, seed=args.seed).test
    imgs = next(iter(fm))[0][:n]
    pixels = ((imgs * STD + MEAN).clamp(0, 1) * 255).round().to(torch.uint8)[:, 0]
    up = torch.stack([efficientnet_preprocess(p.numpy()) for p in pixels])
    result["fashion_mnist_upsampled"] = agree(up)
    result["latency_batch8"] = ab_latency(
        model, pruned, example_input(model, batch_size=8), rounds=max(4, args.rounds // 3), threads=args.threads
    )
    result["checks"] = {
        "about 2.6M params": 2.4e6 <= result["params_after"] <= 2.8e6,
        "forward works": result["forward_shape"] == [1, 1000],
        "ONNX export runs in onnxruntime": bool(result["onnx"].get("ok")),
    }
    result["note"] = "no fine-tuning (no ImageNet data here): agreement measures the raw damage of the cut"
    return result


def section_minilm(args: argparse.Namespace) -> dict[str, Any]:
    from torchslim.models import build_model, example_input
    from torchslim.pruning import prune_channels

    model = build_model("minilm-l6", pretrained=True)
    x2 = example_input(model, batch_size=2)
    out = prune_channels(model, x2, ratio=0.5, head_ratio=1 / 3)
    pruned = out.model.eval()
    layers = pruned.transformer.encoder.layer
    result: dict[str, Any] = {
        "params_before": params(model),
        "params_after": params(pruned),
        "param_ratio": params(pruned) / params(model),
        "heads_per_layer": [int(layer.attention.self.num_attention_heads) for layer in layers],
        "ffn_per_layer": [int(layer.intermediate.dense.out_features) for layer in layers],
    }
    with torch.no_grad():
        a, b = model(**x2), pruned(**x2)
    result["forward_shape"] = list(b.shape)
    result["embedding_cosine_to_original"] = torch.nn.functional.cosine_similarity(a, b).tolist()
    result["macs_ratio"] = macs(pruned, x2) / macs(model, x2)
    batches = (1, 8) if args.quick else (1, 32)
    result["latency"] = {}
    for bs in batches:
        x = example_input(model, batch_size=bs)
        result["latency"][f"batch{bs}"] = ab_latency(
            model, pruned, x, rounds=max(4, args.rounds // (2 if bs > 1 else 1)), threads=args.threads
        )
    result["checks"] = {
        "forward works": result["forward_shape"] == [2, 384],
        "8 heads and 768 FFN neurons left per layer": set(result["heads_per_layer"]) == {8}
        and set(result["ffn_per_layer"]) == {768},
    }
    result["note"] = "no fine-tuning: the cosine shows the raw damage; distillation (issue 6) recovers it"
    return result


def section_bad_input(args: argparse.Namespace) -> dict[str, Any]:
    from torchslim.core.errors import TorchSlimError
    from torchslim.models import build_model, example_input
    from torchslim.pruning import ChannelPruning, MagnitudePruning

    model = build_model("fmnist-resnet", seed=args.seed)
    x = example_input(model, batch_size=2)
    ctx = Context(example_input=x)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    class Untraceable(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return torch.from_numpy(self.fc(x).detach().numpy())

    cases: dict[str, Callable[[], Any]] = {
        "ratio=1.0": lambda: ChannelPruning(ratio=1.0),
        "sparsity=-0.1": lambda: MagnitudePruning(sparsity=-0.1),
        "targets match nothing": lambda: run_technique(
            model, ChannelPruning(), context=ctx, targets=Targets(names=["layer9"])
        ),
        "untraceable model": lambda: run_technique(
            Untraceable(), ChannelPruning(), context=Context(example_input=torch.randn(2, 4))
        ),
        "removes every channel of a layer": lambda: run_technique(
            model, ChannelPruning(per_layer={"layer1.0.conv1": 0.99}), context=ctx
        ),
    }
    out = {}
    for name, fn in cases.items():
        try:
            fn()
            out[name] = {"raised": False}
        except TorchSlimError as exc:
            out[name] = {"raised": True, "type": type(exc).__name__, "message": str(exc)[:240]}
    unchanged = all(torch.equal(before[k], v) for k, v in model.state_dict().items()) and not model_plan(model)
    return {
        "cases": out,
        "model_unchanged": unchanged,
        "checks": {
            "every case raised a clear error": all(c["raised"] for c in out.values()),
            "model unchanged": unchanged,
        },
    }


SECTIONS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "lenet": section_lenet,
    "resnet": section_resnet,
    "efficientnet": section_efficientnet,
    "minilm": section_minilm,
    "bad_input": section_bad_input,
}


# ------------------------------------------------------------------------------------------------
# report


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{100 * v:.2f}%" if pct else f"{v:.3g}"
    return str(v)


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"# Pruning benchmark ({'quick' if results['quick'] else 'full'} run)",
        "",
        f"{env_line(results['env'])}.",
        "",
    ]
    s = results["sections"]
    if "lenet" in s and "rows" in s["lenet"]:
        lines += [
            "## LeNet-300-100 on Fashion-MNIST, 90% unstructured",
            "",
            "| variant | test acc | nonzero / params | artifact bytes | torch.save bytes | latency vs dense (b64) |",
            "|---|---|---|---|---|---|",
        ]
        for label, r in s["lenet"]["rows"].items():
            lat = r["latency"]["ratio"]
            lines.append(
                f"| {label} | {_fmt(r['accuracy'], True)} | {r['nonzero']:,} / {r['params']:,} | "
                f"{r['artifact_bytes']:,} | {r['torch_save_bytes']:,} | {lat:.2f}x |"
            )
        masked = s["lenet"]["rows"]["torchslim magnitude 90% global (iterative)"]["latency_masked"]["ratio"]
        lines += [
            "",
            f"{s['lenet']['note']}; with the masks still attached (as during fine-tuning) torchslim runs at "
            f"{masked:.2f}x of dense; the row above is the baked model (masks applied for good, as saved).",
            "",
        ]
    if "resnet" in s and "rows" in s["resnet"]:
        lines += [
            "## fmnist-resnet, 50% channels + fine-tuning",
            "",
            "| variant | test acc | params | MACs | artifact bytes | latency vs dense (b64) | gain / MAC gain "
            "| verdict |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for label, r in s["resnet"]["rows"].items():
            lat = r.get("latency", {}).get("ratio", 1.0)
            lines.append(
                f"| {label} | {_fmt(r['accuracy'], True)} | {r['params']:,} | {r['mac_ratio']:.2f}x | "
                f"{r['artifact_bytes']:,} | {lat:.2f}x | {_fmt(r.get('latency_gain_over_mac_gain'))} | "
                f"{r.get('verdict', '-')} |"
            )
        lines.append("")
    if "efficientnet" in s and "params_after" in s["efficientnet"]:
        e = s["efficientnet"]
        lines += [
            "## EfficientNet-Lite0, 30% channels (no fine-tuning)",
            "",
            f"- params {e['params_before']:,} -> {e['params_after']:,}; MACs {e['macs_ratio']:.2f}x; "
            f"latency (batch 8) {e['latency_batch8']['ratio']:.2f}x of dense",
            f"- ONNX: {e['onnx']}",
            f"- top-1 agreement with the original: photos {e['photos']['top1_agreement']:.2f} "
            f"({e['photos']['images']} images), upsampled Fashion-MNIST "
            f"{e['fashion_mnist_upsampled']['top1_agreement']:.2f} ({e['fashion_mnist_upsampled']['images']} images)",
            f"- {e['note']}",
            "",
        ]
    if "minilm" in s and "params_after" in s["minilm"]:
        m = s["minilm"]
        lat = ", ".join(f"{k} {v['ratio']:.2f}x" for k, v in m["latency"].items())
        lines += [
            "## MiniLM-L6: 50% FFN neurons, 4 of 12 heads per layer",
            "",
            f"- params {m['params_before']:,} -> {m['params_after']:,} ({m['param_ratio']:.2f}x); MACs "
            f"{m['macs_ratio']:.2f}x; latency vs dense: {lat}",
            f"- embedding cosine to the original: {[round(c, 3) for c in m['embedding_cosine_to_original']]}",
            f"- {m['note']}",
            "",
        ]
    if "bad_input" in s and "cases" in s["bad_input"]:
        lines += ["## Bad input", "", "| case | error |", "|---|---|"]
        for name, c in s["bad_input"]["cases"].items():
            msg = f"{c['type']}: {c['message']}" if c["raised"] else "(no error!)"
            lines.append(f"| {name} | {msg.replace('|', '/')} |")
        lines += ["", f"model unchanged: {s['bad_input']['model_unchanged']}", ""]
    lines += ["## Checks", ""]
    for name, sec in s.items():
        for check, ok in (sec.get("checks") or {}).items():
            lines.append(f"- [{'x' if ok else ' '}] {name}: {check}")
        if "error" in sec:
            lines.append(f"- [ ] {name}: FAILED TO RUN: {sec['error'][:200]}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data and few rounds (smoke test)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {list(SECTIONS)}")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=None, help="latency rounds (default 6 quick, 30 full)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    default_cache = Path(os.environ.get("TORCHSLIM_CACHE") or "~/.cache/torchslim").expanduser() / "benchmarks"
    parser.add_argument("--cache", type=Path, default=default_cache, help="where trained dense baselines are kept")
    parser.add_argument("--no-cache", action="store_true", help="always train the dense baselines")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (6 if args.quick else 30)
    torch.set_num_threads(args.threads)

    import torchslim.pruning  # noqa: F401 - registers the techniques

    results: dict[str, Any] = new_results(quick=args.quick, threads=args.threads)
    started = time.perf_counter()
    results["sections"] = run_sections(args.only, SECTIONS, lambda fn: fn(args), error=parser.error)
    results["seconds"] = time.perf_counter() - started
    stem = "pruning_quick" if args.quick else "pruning"
    report = markdown(results)
    write_results(args.out, stem, results, report)
    print(report)
    return 0 if all("error" not in s for s in results["sections"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
