"""Quantization benchmark (issue 5, "Must show"): every comparison side by side in one run.

    python benchmarks/quantization.py --quick    # smoke run, small data, < 3 minutes on 2 cores
    python benchmarks/quantization.py            # full run (tens of minutes on 2 cores)

Sections (``--only fmnist,minilm,...`` runs a subset):

* ``fmnist``: fmnist-cnn on Fashion-MNIST. torchslim int8 weights + activations, per-channel, 512
  calibration images (simulated and deployed through onnxruntime QDQ) next to the peers on the same
  model: ``torch.ao.quantization.quantize_dynamic`` (Linear only), torchao int8 dynamic and weight-only
  (``quantize_``, Linear only; installed by ``pip install -e .[bench]`` / ``make bench``),
  onnxruntime's own ``quantize_static`` (QDQ, per-channel, same 512 images) and ``quantize_dynamic``
  (the ConvInteger trap): accuracy, bytes, latency at batch 64 (and 1) against onnxruntime fp32 and
  PyTorch fp32 eager measured in the same rounds. Then 4-bit and 2-bit weights with QAT (LSQ).
* ``resnet``: fmnist-resnet (residual blocks): torchslim int8 (convs feeding a residual Add get int8
  outputs) next to onnxruntime's ``quantize_static``: accuracy, bytes, integer kernels, latency of
  onnxruntime sessions alone at batch 64.
* ``minilm``: MiniLM-L6 sentence encoder, torchslim int8 (the default: dynamic per-tensor activations
  with outlier channels split; also without splitting, and per token) next to ``quantize_dynamic``,
  torchao int8 (dynamic and weight-only) and onnxruntime's ``quantize_dynamic``: mean cosine between
  fp32 and int8 embeddings over tweets, the reference pair's cosine (fp32: 0.7553), latency ratios
  against fp32 at batch 1 and 32 (128 tokens).
* ``efficientnet``: EfficientNet-Lite0 (ImageNet weights) int8 PTQ per tensor vs per channel: top-1
  agreement with fp32 on crops of held-out photos (calibrated on crops of *other* photos: coffee, chelsea,
  camera calibrate; astronaut, rocket and sklearn's china and flower are held out).
* ``bad_input``: bits outside 1-8, a per-channel axis that does not exist, NaN / wrong-shape / empty
  calibration data: the error raised, and that the model stayed unchanged.

Writes ``benchmarks/results/quantization[_quick].json`` and ``.md``. Latency: every variant and the
baseline run in the same rounds in rotating order; a variant's ratio is the median over rounds of
``variant_ms / baseline_ms`` within the round (load from other processes cancels out). onnxruntime
sessions run with idle threads not spinning (sessions take turns on 2 cores; a spinning session
steals the next one's cores). The fmnist-cnn int8 vs fp32 claim is timed with onnxruntime sessions
alone (no PyTorch calls in the rounds), at ``--threads`` and at 1 thread. The trained fmnist-cnn is
cached as a torchslim artifact in ``${TORCHSLIM_CACHE:-~/.cache/torchslim}/benchmarks``
(``--no-cache`` retrains).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))
sys.path.insert(0, str(ROOT))

from _harness import (  # noqa: E402 - ort_session, ort_fn, torch_fn, rotating_latency: also imported from here
    env_line,
    log,
    new_results,
    ort_fn,
    ort_session,
    rotating_latency,
    run_sections,
    torch_fn,
    write_results,
)
from torchslim.core import Context, DataSplits  # noqa: E402
from torchslim.core.plans import model_plan  # noqa: E402
from torchslim.quantization import ActivationQuant, Quantize, WeightQuant, quantize_handler  # noqa: E402
from torchslim.train import TrainConfig  # noqa: E402

REFERENCE_PAIR = ("A man is eating food.", "A man is eating a piece of bread.")
REFERENCE_PAIR_FP32 = 0.7553


# ------------------------------------------------------------------------------------------------
# helpers


def check(results: dict[str, Any], claim: str, target: str, measured: Any, ok: bool | None) -> None:
    results.setdefault("checks", []).append({"claim": claim, "target": target, "measured": measured, "ok": ok})
    log(
        f"  check: {claim}: {measured} (target {target}) -> "
        f"{'ok' if ok else 'not met' if ok is not None else 'reported'}"
    )


def file_bytes(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def artifact_bytes(model: nn.Module) -> int:
    from torchslim.io import save

    with tempfile.TemporaryDirectory() as tmp:
        return file_bytes(save(model, Path(tmp) / "a"))


def torch_save_bytes(model: nn.Module) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.pt"
        torch.save(model.state_dict(), path)
        return path.stat().st_size


def accuracy_torch(model: nn.Module, loader: Any) -> float:
    correct = total = 0
    model.eval()
    with torch.no_grad():
        for x, y in loader:
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    return correct / total


def accuracy_onnx(path: Path, loader: Any, threads: int) -> float:
    session = ort_session(path, threads)
    name = session.get_inputs()[0].name
    correct = total = 0
    for x, y in loader:
        out = session.run(None, {name: x.numpy()})[0]
        correct += int((out.argmax(1) == y.numpy()).sum())
        total += len(y)
    return correct / total


class _Reader:
    """onnxruntime CalibrationDataReader over a list of feed dicts."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._it = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:  # pragma: no cover - newer onnxruntime may call it
        pass


def calibration_feeds(splits: DataSplits, samples: int = 512) -> list[dict[str, np.ndarray]]:
    """onnxruntime feeds of the first `samples` calibration images (the 512 torchslim calibrates on)."""
    feeds, taken = [], 0
    for x, _ in splits.calibration:
        feeds.append({"input": x.numpy()})
        taken += len(x)
        if taken >= samples:
            break
    return feeds


def ort_quantize_static(
    float_path: Path, out: Path, feeds: list[dict[str, np.ndarray]], *, activations: str = "uint8"
) -> None:
    """onnxruntime's ``quantize_static``: QDQ, per-channel int8 weights, activations ``int8`` or
    ``uint8`` (onnxruntime's default, with which it fuses every Conv, Add and pooling of a ResNet
    into integer kernels), calibrated on `feeds`."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(_Reader, CalibrationDataReader):
        pass

    pre = out.with_name(out.stem + "_pre.onnx")
    quant_pre_process(str(float_path), str(pre))
    quantize_static(
        str(pre),
        str(out),
        Reader(feeds),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8,
        weight_type=QuantType.QInt8,
    )


def ort_quantize_dynamic(float_path: Path, out: Path, *, per_channel: bool = False) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(float_path), str(out), weight_type=QuantType.QInt8, per_channel=per_channel)


TORCHAO_VARIANTS = {
    "torchao int8 dynamic (Linear only)": "Int8DynamicActivationInt8WeightConfig",
    "torchao int8 weight-only (Linear only)": "Int8WeightOnlyConfig",
}


def torchao_models(model: nn.Module) -> dict[str, nn.Module | str]:
    """torchao's int8 configs applied with ``quantize_`` (its default filter: every nn.Linear), or a
    note per variant when torchao is not installed (``pip install -e .[bench]``)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import torchao.quantization as tq
    except ImportError:
        return {
            name: "not installed (pip install -e .[bench]); PEERS.md quotes its measured numbers"
            for name in TORCHAO_VARIANTS
        }
    out: dict[str, nn.Module | str] = {}
    for name, config in TORCHAO_VARIANTS.items():
        m = copy.deepcopy(model).eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tq.quantize_(m, getattr(tq, config)())
        out[name] = m
    return out


def ao_dynamic(model: nn.Module) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {nn.Linear}, dtype=torch.qint8)


# ------------------------------------------------------------------------------------------------
# fmnist-cnn


ET_FP32, ET_INT8 = "ExecuTorch fp32 (XNNPACK)", "torchslim int8 on ExecuTorch (XNNPACK)"


def executorch_latency(
    models: dict[str, nn.Module], x: torch.Tensor, directory: Path, threads: int, rounds: int
) -> dict[str, Any]:
    """Each model as an ExecuTorch program (XNNPACK) at `x`'s shape, timed as ``method.execute`` in
    rounds of their own (the first model is the ratio's baseline): interleaved with onnxruntime's
    calls, one runtime's idle threads spinning slowed the other's (fmnist-cnn int8 on onnxruntime at
    2 threads: 0.756x of its fp32 against 0.49-0.54x in rounds without ExecuTorch). A program is
    exported once per batch shape; XNNPACK's pool is sized before any program is loaded."""
    from torchslim.deploy.executorch import export_executorch, load_method, set_xnnpack_threads

    set_xnnpack_threads(threads)
    fns: dict[str, Callable[[], Any]] = {}
    inputs = [x.contiguous()]
    for i, (name, model) in enumerate(models.items()):
        path = directory / f"et{i}_b{len(x)}.pte"
        if not path.exists():
            export_executorch(model, path, x)
        method = load_method(path)
        fns[name] = lambda method=method: method.execute(inputs)
    lat = rotating_latency(fns, next(iter(models)), rounds=rounds, threads=threads)
    del fns, method  # the programs are released before XNNPACK's pool is resized
    return lat


def check_best_backend(results: dict[str, Any], model: str, label: str, lat: dict[str, Any], *, target: float) -> None:
    """Check the fastest int8 row's median over the fastest fp32 row's (each model on its best
    backend; onnxruntime and ExecuTorch medians come from rounds of their own, on the same batch)."""
    int8 = min(("torchslim int8 deployed (onnxruntime QDQ)", ET_INT8), key=lambda n: lat[n]["ms"])
    fp32 = min(("onnxruntime fp32", ET_FP32), key=lambda n: lat[n]["ms"])
    ratio = lat[int8]["ms"] / lat[fp32]["ms"]
    claim = f"{model} int8 on its best backend vs fp32 on its best backend, {label}"
    check(results, claim, f"<= {target}x", f"{ratio:.3f}x ({int8} / {fp32})", ratio <= target)


def trained_fmnist_cnn(
    args: argparse.Namespace, splits: DataSplits, *, name: str = "fmnist-cnn", epochs: int = 3
) -> nn.Module:
    from torchslim.io import load, save
    from torchslim.models import build_model
    from torchslim.train import train

    tag = "quick" if args.quick else "full"
    cache = args.cache / f"quantization-{name}-{tag}"
    if cache.exists() and not args.no_cache:
        log(f"  loading cached {name} from {cache}")
        return load(cache)
    model = build_model(name, seed=0)
    epochs = 1 if args.quick else epochs
    log(f"  training {name} for {epochs} epoch(s)")
    train(model, splits.train, config=TrainConfig(epochs=epochs, lr=1e-3), seed=0, quiet=True)
    model.eval()
    try:
        save(model, cache)
    except Exception as exc:  # noqa: BLE001 - caching is a convenience
        log(f"  (could not cache the trained model: {exc})")
    return model


def section_fmnist(args: argparse.Namespace, results: dict[str, Any]) -> dict[str, Any]:
    from torchslim.data import load_splits
    from torchslim.deploy import check_parity, export_onnx, integer_op_summary
    from torchslim.quantization.modules import QuantizedMixin

    threads = args.threads
    splits = load_splits(
        "fashion-mnist",
        batch_size=128,
        train_samples=4000 if args.quick else None,
        eval_samples=1000 if args.quick else None,
        seed=0,
    )
    model = trained_fmnist_cnn(args, splits)
    ctx = Context(data=splits, seed=0, quiet=True)
    out: dict[str, Any] = {}
    float_acc = accuracy_torch(model, splits.test)
    log(f"  float accuracy {float_acc:.4f}")

    t0 = time.perf_counter()
    step = quantize_handler(
        model,
        Quantize(weights=WeightQuant(bits=8, granularity="per_channel"), calibration_samples=512),
        targets=None,
        context=ctx,
    )
    q8 = step.model
    out["torchslim_int8_seconds"] = round(time.perf_counter() - t0, 2)
    out["torchslim_int8_layers"] = step.layers
    out["torchslim_int8_info"] = step.info

    tmp = Path(tempfile.mkdtemp(prefix="ts-bench-q-"))
    example = next(iter(splits.test))[0][:1]
    export_onnx(model, tmp / "fp32.onnx", example)
    export_onnx(q8, tmp / "ts_int8.onnx", example)
    ort_quantize_static(tmp / "fp32.onnx", tmp / "ort_static.onnx", calibration_feeds(splits))
    ort_quantize_dynamic(tmp / "fp32.onnx", tmp / "ort_dynamic.onnx")
    ao = ao_dynamic(model)
    taos = torchao_models(model)

    summary = integer_op_summary(tmp / "ts_int8.onnx")
    out["torchslim_onnx_ops"] = summary["all_ops"]
    test_x = torch.cat([b[0] for b in splits.test])[:512]
    parity = check_parity(q8, tmp / "ts_int8.onnx", test_x, steps=2.0)
    out["onnx_parity"] = parity.to_dict()

    variants = {
        "PyTorch fp32 eager": {"acc": float_acc, "bytes": artifact_bytes(model), "bytes_kind": "torchslim artifact"},
        "onnxruntime fp32": {
            "acc": accuracy_onnx(tmp / "fp32.onnx", splits.test, threads),
            "bytes": file_bytes(tmp / "fp32.onnx"),
        },
        "torch.ao quantize_dynamic (Linear only)": {
            "acc": accuracy_torch(ao, splits.test),
            "bytes": torch_save_bytes(ao),
            "bytes_kind": "torch.save state_dict",
        },
        **{
            name: {"note": m}
            if isinstance(m, str)
            else {
                "acc": accuracy_torch(m, splits.test),
                "bytes": torch_save_bytes(m),
                "bytes_kind": "torch.save state_dict",
            }
            for name, m in taos.items()
        },
        "onnxruntime quantize_static (QDQ, per-channel)": {
            "acc": accuracy_onnx(tmp / "ort_static.onnx", splits.test, threads),
            "bytes": file_bytes(tmp / "ort_static.onnx"),
        },
        "onnxruntime quantize_dynamic (ConvInteger)": {
            "acc": accuracy_onnx(tmp / "ort_dynamic.onnx", splits.test, threads),
            "bytes": file_bytes(tmp / "ort_dynamic.onnx"),
        },
        "torchslim int8 simulated (PyTorch)": {
            "acc": accuracy_torch(q8, splits.test),
            "bytes": artifact_bytes(q8),
            "bytes_kind": "torchslim artifact (packed)",
        },
        "torchslim int8 deployed (onnxruntime QDQ)": {
            "acc": accuracy_onnx(tmp / "ts_int8.onnx", splits.test, threads),
            "bytes": file_bytes(tmp / "ts_int8.onnx"),
        },
    }
    for batch in (64, 1):
        xb = test_x[:batch]
        feeds = {"input": xb.numpy()}
        fns = {
            "onnxruntime fp32": ort_fn(ort_session(tmp / "fp32.onnx", threads), feeds),
            "PyTorch fp32 eager": torch_fn(model, xb),
            "torch.ao quantize_dynamic (Linear only)": torch_fn(ao, xb),
            **{name: torch_fn(m, xb) for name, m in taos.items() if not isinstance(m, str)},
            "onnxruntime quantize_static (QDQ, per-channel)": ort_fn(
                ort_session(tmp / "ort_static.onnx", threads), feeds
            ),
            "onnxruntime quantize_dynamic (ConvInteger)": ort_fn(ort_session(tmp / "ort_dynamic.onnx", threads), feeds),
            "torchslim int8 simulated (PyTorch)": torch_fn(q8, xb),
            "torchslim int8 deployed (onnxruntime QDQ)": ort_fn(ort_session(tmp / "ts_int8.onnx", threads), feeds),
        }
        lat = rotating_latency(fns, "onnxruntime fp32", rounds=args.rounds, threads=threads)
        eager = lat["PyTorch fp32 eager"]["ms"]
        for name, row in lat.items():
            variants[name][f"ms_b{batch}"] = row["ms"]
            variants[name][f"vs_ort_fp32_b{batch}"] = row["ratio"]
            variants[name][f"speedup_vs_eager_b{batch}"] = round(eager / row["ms"], 2)
    # runtime sessions alone (onnxruntime and ExecuTorch; no PyTorch calls, whose idle OpenMP threads
    # spin between turns and slow the next small runtime call), at the benchmark's thread count and
    # at one thread (a small device, or a shared core); the "vs ORT fp32" columns come from here
    ort_files = {
        "onnxruntime fp32": "fp32.onnx",
        "onnxruntime quantize_static (QDQ, per-channel)": "ort_static.onnx",
        "torchslim int8 deployed (onnxruntime QDQ)": "ts_int8.onnx",
    }
    ort_only: dict[str, Any] = {}
    for n_threads in sorted({threads, 1}, reverse=True):
        for batch in (64, 1):
            feeds = {"input": test_x[:batch].numpy()}
            fns = {name: ort_fn(ort_session(tmp / file, n_threads), feeds) for name, file in ort_files.items()}
            rounds = args.rounds * (2 if batch > 1 else 10)
            lat = rotating_latency(fns, "onnxruntime fp32", rounds=rounds, threads=n_threads)
            lat.update(executorch_latency({ET_FP32: model, ET_INT8: q8}, test_x[:batch], tmp, n_threads, rounds))
            ort_only[f"batch {batch}, {n_threads} thread{'s' if n_threads > 1 else ''}"] = lat
            if n_threads == threads:
                for name, row in lat.items():
                    if name not in variants:
                        continue  # the ExecuTorch rows are in the "sessions alone" lines
                    variants[name][f"ms_b{batch}"] = row["ms"]
                    variants[name][f"vs_ort_fp32_b{batch}"] = row["ratio"]
    out["ort_only"] = ort_only
    out["variants"] = variants

    ts = variants["torchslim int8 deployed (onnxruntime QDQ)"]
    drop_sim = (float_acc - variants["torchslim int8 simulated (PyTorch)"]["acc"]) * 100
    drop_dep = (float_acc - ts["acc"]) * 100
    check(
        results,
        "fmnist-cnn int8 W+A per-channel: accuracy drop (simulated / deployed)",
        "<= 0.3 points",
        f"{drop_sim:.2f} / {drop_dep:.2f} points",
        max(drop_sim, drop_dep) <= 0.3,
    )
    for label, lat in ort_only.items():
        if not label.startswith("batch 64"):
            continue
        ratio = lat["torchslim int8 deployed (onnxruntime QDQ)"]["ratio"]
        check(
            results,
            f"fmnist-cnn int8: onnxruntime int8 latency vs onnxruntime fp32, {label}",
            "<= 0.5x",
            f"{ratio:.3f}x (onnxruntime quantize_static: "
            f"{lat['onnxruntime quantize_static (QDQ, per-channel)']['ratio']:.3f}x)",
            ratio <= 0.5,
        )
        check_best_backend(results, "fmnist-cnn", label, lat, target=0.5)
    ratio_bytes = variants["torchslim int8 simulated (PyTorch)"]["bytes"] / variants["PyTorch fp32 eager"]["bytes"]
    check(
        results,
        "fmnist-cnn int8: artifact bytes vs fp32 artifact",
        "<= 0.27x",
        f"{ratio_bytes:.3f}x",
        ratio_bytes <= 0.27,
    )
    ops = summary["all_ops"]
    int8_convs = sum(isinstance(m, nn.Conv2d) and isinstance(m, QuantizedMixin) for m in q8.modules())
    float_convs = sum(type(m) is nn.Conv2d for m in q8.modules())
    static_ok = (
        ops.get("QLinearConv", 0) == int8_convs
        and "ConvInteger" not in ops
        and ops.get("Conv", 0) + ops.get("FusedConv", 0) == float_convs
    )
    kept = {name: reason.split(":")[0] for name, reason in step.skipped.items() if "BatchNorm" not in reason}
    check(
        results,
        "torchslim picks static QDQ for convolutions (integer QLinearConv, no ConvInteger; float Conv "
        "only for layers the report keeps float)",
        "QLinearConv for every int8 conv",
        f"{ {k: v for k, v in ops.items() if 'Conv' in k or 'Gemm' in k} }; kept float: {kept}",
        static_ok,
    )
    peers = [
        "onnxruntime quantize_static (QDQ, per-channel)",
        "onnxruntime quantize_dynamic (ConvInteger)",
        "torch.ao quantize_dynamic (Linear only)",
        *(name for name, m in taos.items() if not isinstance(m, str)),
    ]
    fastest = min(peers, key=lambda k: variants[k]["ms_b64"])
    check(
        results,
        "torchslim deployed int8 at least as fast as the fastest peer (batch 64, same model)",
        f"<= {fastest} (5% noise margin)",
        f"{ts['ms_b64']:.2f} ms vs {variants[fastest]['ms_b64']:.2f} ms",
        ts["ms_b64"] <= 1.05 * variants[fastest]["ms_b64"],
    )
    check(
        results,
        "ONNX QDQ output within 2 quantization steps of torchslim's simulated output",
        "<= 2 steps",
        f"{parity.max_diff_in_steps:.3f} steps",
        parity.ok,
    )

    # ---- QAT 4-bit and 2-bit -----------------------------------------------------------------
    qat_rows = {}
    steps = 15 if args.quick else None
    for bits in (4, 2):
        qat_train = TrainConfig(epochs=1, max_steps=steps, lr=1e-4 if bits == 4 else 3e-4, schedule="cosine")
        cfg = Quantize(weights=WeightQuant(bits=bits), mode="qat", train=qat_train, calibration_samples=512)
        t0 = time.perf_counter()
        res = quantize_handler(model, cfg, targets=None, context=ctx)
        acc = accuracy_torch(res.model, splits.test)
        ptq = quantize_handler(
            model,
            Quantize(weights=WeightQuant(bits=bits, range="mse" if args.quick else "auto"), calibration_samples=512),
            targets=None,
            context=ctx,
        )
        ptq_acc = accuracy_torch(ptq.model, splits.test)
        qat_rows[f"{bits}-bit"] = {
            "qat_acc": acc,
            "qat_drop_points": round((float_acc - acc) * 100, 2),
            "qat_seconds": round(time.perf_counter() - t0, 1),
            "ptq_acc": ptq_acc,
            "ptq_method": ptq.info["method"],
            "artifact_bytes": artifact_bytes(res.model),
            "qat_steps": res.info.get("qat", {}).get("steps"),
        }
    out["qat"] = qat_rows
    check(
        results,
        "fmnist-cnn 4-bit weights with QAT: accuracy drop",
        "<= 1 point",
        f"{qat_rows['4-bit']['qat_drop_points']:.2f} points",
        qat_rows["4-bit"]["qat_drop_points"] <= 1.0,
    )
    check(
        results,
        "fmnist-cnn 2-bit weights with QAT: accuracy drop",
        "reported",
        f"{qat_rows['2-bit']['qat_drop_points']:.2f} points",
        None,
    )
    out["float_acc"] = float_acc
    return out


# ------------------------------------------------------------------------------------------------
# fmnist-resnet (residual blocks)


def section_resnet(args: argparse.Namespace, results: dict[str, Any]) -> dict[str, Any]:
    """fmnist-resnet int8 on onnxruntime: torchslim (residual branches with int8 outputs) next to
    onnxruntime's quantize_static, accuracy and latency (onnxruntime sessions alone)."""
    from torchslim.data import load_splits
    from torchslim.deploy import check_parity, export_onnx, integer_op_summary

    splits = load_splits(
        "fashion-mnist",
        batch_size=128,
        train_samples=4000 if args.quick else None,
        eval_samples=1000 if args.quick else None,
        seed=0,
    )
    model = trained_fmnist_cnn(args, splits, name="fmnist-resnet", epochs=2)
    ctx = Context(data=splits, seed=0, quiet=True)
    float_acc = accuracy_torch(model, splits.test)
    step = quantize_handler(
        model, Quantize(weights=WeightQuant(bits=8), calibration_samples=512), targets=None, context=ctx
    )
    tmp = Path(tempfile.mkdtemp(prefix="ts-bench-resnet-"))
    example = next(iter(splits.test))[0][:1]
    export_onnx(model, tmp / "fp32.onnx", example)
    export_onnx(step.model, tmp / "ts_int8.onnx", example)
    ort_quantize_static(tmp / "fp32.onnx", tmp / "ort_static.onnx", calibration_feeds(splits))
    test_x = torch.cat([b[0] for b in splits.test])[:512]
    files = {
        "onnxruntime fp32": "fp32.onnx",
        "onnxruntime quantize_static (QDQ, per-channel)": "ort_static.onnx",
        "torchslim int8 deployed (onnxruntime QDQ)": "ts_int8.onnx",
    }
    rows: dict[str, dict[str, Any]] = {
        name: {
            "acc": accuracy_onnx(tmp / f, splits.test, args.threads),
            "bytes": file_bytes(tmp / f),
            "integer_ops": integer_op_summary(tmp / f)["integer_ops"],
        }
        for name, f in files.items()
    }
    rows["torchslim int8 simulated (PyTorch)"] = {
        "acc": accuracy_torch(step.model, splits.test),
        "bytes": artifact_bytes(step.model),
    }
    latency: dict[str, Any] = {}
    for n_threads in sorted({args.threads, 1}, reverse=True):
        feeds = {"input": test_x[:64].numpy()}
        fns = {name: ort_fn(ort_session(tmp / f, n_threads), feeds) for name, f in files.items()}
        lat = rotating_latency(fns, "onnxruntime fp32", rounds=args.rounds, threads=n_threads)
        lat.update(executorch_latency({ET_FP32: model, ET_INT8: step.model}, test_x[:64], tmp, n_threads, args.rounds))
        latency[f"batch 64, {n_threads} thread{'s' if n_threads > 1 else ''}"] = lat
    parity = check_parity(step.model, tmp / "ts_int8.onnx", test_x[:256], steps=2.0)
    out = {
        "float_acc": float_acc,
        "rows": rows,
        "latency": latency,
        "onnx_parity": parity.to_dict(),
        "int8_outputs": step.info.get("int8_outputs", []),
        "kept_float": step.skipped,
    }
    for label, lat in latency.items():
        ours = lat["torchslim int8 deployed (onnxruntime QDQ)"]["ratio"]
        peer = lat["onnxruntime quantize_static (QDQ, per-channel)"]["ratio"]
        check(
            results,
            f"fmnist-resnet int8: onnxruntime int8 latency vs onnxruntime fp32, {label}",
            "reported",
            f"{ours:.3f}x (onnxruntime quantize_static: {peer:.3f}x)",
            None,
        )
        check(
            results,
            f"fmnist-resnet: torchslim deployed int8 at least as fast as onnxruntime quantize_static, {label}",
            "<= quantize_static (5% noise margin)",
            f"{ours:.3f}x vs {peer:.3f}x",
            ours <= 1.05 * peer,
        )
        check_best_backend(results, "fmnist-resnet", label, lat, target=0.6)
    drop = (float_acc - rows["torchslim int8 deployed (onnxruntime QDQ)"]["acc"]) * 100
    check(results, "fmnist-resnet int8: accuracy drop, deployed", "reported", f"{drop:.2f} points", None)
    return out


# ------------------------------------------------------------------------------------------------
# MiniLM


def _embed(model: nn.Module, texts: list[str], batch: int = 32) -> torch.Tensor:
    outs = []
    with torch.no_grad():
        for i in range(0, len(texts), batch):
            outs.append(model(**model.tokenize(texts[i : i + batch], padding="longest")))
    return torch.cat(outs)


def _embed_with(run: Callable[[dict[str, Any]], Any], model: Any, texts: list[str], batch: int = 32) -> torch.Tensor:
    """Sentence embeddings of `texts` from `run` (input feeds -> first output), in batches padded to
    their longest text."""
    outs = []
    for i in range(0, len(texts), batch):
        enc = model.tokenize(texts[i : i + batch], padding="longest")
        outs.append(torch.from_numpy(np.asarray(run({k: v.numpy() for k, v in enc.items()}))))
    return torch.cat(outs)


def _embed_onnx(path: Path, model: nn.Module, texts: list[str], threads: int, batch: int = 32) -> torch.Tensor:
    session = ort_session(path, threads)
    return _embed_with(lambda feeds: session.run(None, feeds)[0], model, texts, batch)


def _pair_cos(emb: torch.Tensor) -> float:
    return float(F.cosine_similarity(emb[0:1], emb[1:2]))


def section_minilm(args: argparse.Namespace, results: dict[str, Any]) -> dict[str, Any]:
    from torchslim.data import load_splits
    from torchslim.deploy import export_onnx, integer_op_summary
    from torchslim.models import build_model

    threads = args.threads
    n_texts = 32 if args.quick else 1000
    model = build_model("minilm-l6")
    splits = load_splits("tweets", batch_size=32, eval_samples=max(n_texts, 64), seed=0)
    texts: list[str] = []
    for batch, _ in splits.test:
        texts += list(batch)
        if len(texts) >= n_texts:
            break
    texts = texts[:n_texts]
    ctx = Context(data=splits, seed=0, quiet=True)
    tmp = Path(tempfile.mkdtemp(prefix="ts-bench-minilm-"))
    pair = list(REFERENCE_PAIR)
    ref = _embed(model, texts)
    ref_pair = _pair_cos(_embed(model, pair))
    example = model.tokenize(pair, padding="longest")
    export_onnx(model, tmp / "fp32.onnx", example)

    rows: dict[str, dict[str, Any]] = {}

    def score(name: str, emb: torch.Tensor, pair_emb: torch.Tensor, **extra: Any) -> None:
        cos = F.cosine_similarity(ref, emb)
        rows[name] = {
            "mean_cosine": round(float(cos.mean()), 5),
            "min_cosine": round(float(cos.min()), 5),
            "pair_cosine": round(_pair_cos(pair_emb), 4),
            **extra,
        }

    score("PyTorch fp32", ref, _embed(model, pair), bytes=artifact_bytes(model))
    cal = 8 if args.quick else 512
    variants = {
        "per_tensor": Quantize(weights=WeightQuant(bits=8), calibration_samples=cal)
    }  # the default: outlier channels split
    if not args.quick:
        variants["per_tensor_nosplit"] = Quantize(
            weights=WeightQuant(bits=8), calibration_samples=cal, outlier_channels=0
        )
        variants["per_token"] = Quantize(
            weights=WeightQuant(bits=8),
            activations=ActivationQuant(dynamic_granularity="per_token"),
            calibration_samples=cal,
        )
    for gran, cfg in variants.items():
        res = quantize_handler(model, cfg, targets=None, context=ctx)
        path = tmp / f"ts_{gran}.onnx"
        export_onnx(res.model, path, example)
        extra = {"split_channels": sum(r.get("split_channels", 0) for r in res.layers)}
        score(
            f"torchslim int8 dynamic {gran} (simulated)",
            _embed(res.model, texts),
            _embed(res.model, pair),
            bytes=artifact_bytes(res.model),
            **extra,
        )
        score(
            f"torchslim int8 dynamic {gran} (onnxruntime)",
            _embed_onnx(path, model, texts, threads),
            _embed_onnx(path, model, pair, threads),
            bytes=file_bytes(path),
            integer_ops=integer_op_summary(path)["integer_ops"],
            **extra,
        )
    ao = ao_dynamic(model)
    score("torch.ao quantize_dynamic", _embed(ao, texts), _embed(ao, pair), bytes=torch_save_bytes(ao))
    ort_quantize_dynamic(tmp / "fp32.onnx", tmp / "ort_dyn.onnx", per_channel=True)
    score(
        "onnxruntime quantize_dynamic (per-channel)",
        _embed_onnx(tmp / "ort_dyn.onnx", model, texts, threads),
        _embed_onnx(tmp / "ort_dyn.onnx", model, pair, threads),
        bytes=file_bytes(tmp / "ort_dyn.onnx"),
    )
    score(
        "onnxruntime fp32",
        _embed_onnx(tmp / "fp32.onnx", model, texts, threads),
        _embed_onnx(tmp / "fp32.onnx", model, pair, threads),
        bytes=file_bytes(tmp / "fp32.onnx"),
    )
    taos = torchao_models(model)
    for name, m in taos.items():
        if isinstance(m, str):
            rows[name] = {"note": m}
        else:
            score(name, _embed(m, texts), _embed(m, pair), bytes=torch_save_bytes(m))

    latency = {}
    for batch in (1, 32) if not args.quick else (1,):
        enc = model.tokenize((texts * 40)[:batch], padding="max_length")
        feeds = {k: v.numpy() for k, v in enc.items()}
        fns = {
            "PyTorch fp32": torch_fn(model, enc),
            "torch.ao quantize_dynamic": torch_fn(ao, enc),
            **{name: torch_fn(m, enc) for name, m in taos.items() if not isinstance(m, str)},
            "onnxruntime fp32": ort_fn(ort_session(tmp / "fp32.onnx", threads), feeds),
            "onnxruntime quantize_dynamic (per-channel)": ort_fn(ort_session(tmp / "ort_dyn.onnx", threads), feeds),
        }
        for gran in variants:
            fns[f"torchslim int8 dynamic {gran} (onnxruntime)"] = ort_fn(
                ort_session(tmp / f"ts_{gran}.onnx", threads), feeds
            )
        rounds = max(3, args.rounds // (4 if batch > 1 else 2))
        lat = rotating_latency(fns, "PyTorch fp32", rounds=rounds, threads=threads)
        latency[f"batch{batch}_seq128"] = lat
    out = {"texts": len(texts), "fp32_pair_cosine": round(ref_pair, 4), "rows": rows, "latency": latency}
    best = rows["torchslim int8 dynamic per_tensor (onnxruntime)"]
    check(
        results,
        "minilm-l6 int8: mean cosine fp32 vs int8 (torchslim default, deployed)",
        ">= 0.99",
        f"{best['mean_cosine']:.4f} over {len(texts)} tweets",
        best["mean_cosine"] >= 0.99,
    )
    check(
        results,
        "minilm-l6 int8: reference pair cosine (torchslim default, deployed)",
        f"within 0.005 of {REFERENCE_PAIR_FP32}",
        f"{best['pair_cosine']:.4f} (quantize_dynamic: {rows['torch.ao quantize_dynamic']['pair_cosine']:.4f})",
        abs(best["pair_cosine"] - REFERENCE_PAIR_FP32) <= 0.005,
    )
    key = max(latency)
    check(
        results,
        f"minilm-l6 int8 latency ratio vs PyTorch fp32 ({key})",
        "reported",
        {k: v["ratio"] for k, v in latency[key].items()},
        None,
    )
    ours = latency[key]["torchslim int8 dynamic per_tensor (onnxruntime)"]["ratio"]
    peers = [
        "onnxruntime quantize_dynamic (per-channel)",
        "torch.ao quantize_dynamic",
        *(name for name, m in taos.items() if not isinstance(m, str)),
    ]
    fastest = min(peers, key=lambda k: latency[key][k]["ratio"])
    peer = latency[key][fastest]["ratio"]
    check(
        results,
        f"minilm-l6: torchslim deployed int8 at least as fast as the fastest peer ({key})",
        f"<= {fastest} (5% noise margin)",
        f"{ours:.3f}x vs {peer:.3f}x of PyTorch fp32",
        ours <= peer * 1.05,
    )
    return out


# ------------------------------------------------------------------------------------------------
# EfficientNet-Lite0


CALIBRATION_PHOTOS = ("coffee", "chelsea", "camera")
"""skimage photos whose crops calibrate; agreement is measured on crops of *other* photos (held out)."""


def _photos(held_out: bool) -> list[np.ndarray]:
    """Calibration photos, or the held-out ones: the other skimage photos and sklearn's two samples."""
    from sklearn.datasets import load_sample_images

    from torchslim.models import sample_photos

    photos = sample_photos()
    if not held_out:
        return [photos[name] for name in CALIBRATION_PHOTOS]
    others = [photo for name, photo in photos.items() if name not in CALIBRATION_PHOTOS]
    return others + [np.asarray(image, dtype=np.uint8) for image in load_sample_images().images]


def _crops(n: int, seed: int, *, held_out: bool) -> torch.Tensor:
    """`n` random crops (35-100% of the side, half mirrored) of the calibration or held-out photos."""
    from torchslim.models import efficientnet_preprocess

    photos = _photos(held_out)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        s = rng.uniform(0.35, 1.0)
        ch, cw = max(16, int(h * s)), max(16, int(w * s))
        y0, x0 = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = photo[y0 : y0 + ch, x0 : x0 + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out.append(efficientnet_preprocess(np.ascontiguousarray(crop)))
    return torch.stack(out)


def section_efficientnet(args: argparse.Namespace, results: dict[str, Any]) -> dict[str, Any]:
    from torchslim.deploy import check_parity, export_onnx, integer_op_summary
    from torchslim.models import build_model

    model = build_model("efficientnet-lite0")
    n_cal, n_test = (8, 8) if args.quick else (64, 128)
    cal = _crops(n_cal, seed=0, held_out=False)
    test = _crops(n_test, seed=1, held_out=True)
    with torch.no_grad():
        ref = torch.cat([model(test[i : i + 16]) for i in range(0, len(test), 16)]).argmax(1)
    ctx = Context(
        data=DataSplits(calibration=[(cal[i : i + 8], None) for i in range(0, len(cal), 8)]), seed=0, quiet=True
    )
    rows = {}
    best_model, best_key = None, None
    variants = [("per_tensor", "minmax"), ("per_channel", "minmax")]
    if not args.quick:
        variants.append(("per_channel", "percentile"))
    for gran, observer in variants:
        t0 = time.perf_counter()
        res = quantize_handler(
            model,
            Quantize(
                weights=WeightQuant(bits=8, granularity=gran, range="minmax" if args.quick else "auto"),
                activations=ActivationQuant(observer=observer),
                calibration_samples=n_cal,
            ),
            targets=None,
            context=ctx,
        )
        with torch.no_grad():
            got = torch.cat([res.model(test[i : i + 16]) for i in range(0, len(test), 16)]).argmax(1)
        corrected = bool(res.info.get("bias_correction"))  # the default (auto) with calibration data
        key = f"{gran} ({observer} observer{', bias correction' if corrected else ''})"
        rows[key] = {
            "top1_agreement": round(float((got == ref).float().mean()), 4),
            "seconds": round(time.perf_counter() - t0, 1),
            "output_sqnr_db_calibration": res.info.get("output_sqnr_db"),
            "folded_batchnorm": len(res.info.get("folded_batchnorm", [])),
            "quantized_layers": len(res.layers),
            "int8_outputs": len(res.info.get("int8_outputs", [])),
            "bias_correction": corrected,
        }
        if best_key is None or rows[key]["top1_agreement"] > rows[best_key]["top1_agreement"]:
            best_model, best_key = res.model, key
    out: dict[str, Any] = {"calibration_crops": n_cal, "held_out_crops": n_test, "rows": rows}
    tmp = Path(tempfile.mkdtemp(prefix="ts-bench-eff-"))
    export_onnx(best_model, tmp / "best.onnx", test[:1])
    export_onnx(model, tmp / "fp32.onnx", test[:1])
    summary = integer_op_summary(tmp / "best.onnx")
    out["best_onnx"] = {
        "ops": summary["integer_ops"],
        "float_ops": summary["float_compute_ops"],
        "parity": check_parity(best_model, tmp / "best.onnx", test[:4]).to_dict(),
        "bytes": file_bytes(tmp / "best.onnx"),
        "fp32_bytes": file_bytes(tmp / "fp32.onnx"),
    }
    feeds = {"input": test[:8].numpy()}
    fns = {
        "onnxruntime fp32": ort_fn(ort_session(tmp / "fp32.onnx", args.threads), feeds),
        "torchslim int8 (best)": ort_fn(ort_session(tmp / "best.onnx", args.threads), feeds),
    }
    out["latency_b8"] = rotating_latency(fns, "onnxruntime fp32", rounds=max(5, args.rounds // 2), threads=args.threads)
    ratio = out["latency_b8"]["torchslim int8 (best)"]["ratio"]
    check(
        results,
        f"efficientnet-lite0 int8: onnxruntime latency vs onnxruntime fp32, batch 8, {args.threads} threads",
        "reported",
        f"{ratio:.3f}x ({out['best_onnx']['ops']})",
        None,
    )
    for key, row in rows.items():
        check(
            results,
            f"efficientnet-lite0 int8 PTQ {key}: top-1 agreement with fp32",
            "reported",
            row["top1_agreement"],
            None,
        )
    check(
        results,
        "efficientnet-lite0 int8 PTQ best granularity: top-1 agreement",
        ">= 0.90",
        f"{rows[best_key]['top1_agreement']:.3f} ({best_key}, {n_test} crops of held-out photos)",
        rows[best_key]["top1_agreement"] >= 0.90,
    )
    return out


# ------------------------------------------------------------------------------------------------
# bad input


def section_bad_input(args: argparse.Namespace, results: dict[str, Any]) -> dict[str, Any]:
    from torchslim.core.errors import TorchSlimError
    from torchslim.models import build_model

    model = build_model("fmnist-cnn", seed=0)
    good = [(torch.rand(64, 1, 28, 28), torch.zeros(64, dtype=torch.long))]
    nan = [(good[0][0].clone(), good[0][1])]
    nan[0][0][0, 0, 0, 0] = float("nan")
    wrong = [(torch.rand(64, 1, 32, 32), torch.zeros(64, dtype=torch.long))]
    cases: dict[str, Callable[[], Any]] = {
        "bits=9": lambda: Quantize(weights=WeightQuant(bits=9)),
        "bits=0": lambda: Quantize(weights=WeightQuant(bits=0)),
        "per-channel axis=4 (no layer has 5 dimensions)": lambda: quantize_handler(
            model,
            Quantize(weights=WeightQuant(granularity="per_channel", axis=4)),
            targets=None,
            context=Context(data=DataSplits(calibration=good)),
        ),
        "calibration data with NaN": lambda: quantize_handler(
            model, Quantize(), targets=None, context=Context(data=DataSplits(calibration=nan))
        ),
        "calibration data of the wrong shape": lambda: quantize_handler(
            model,
            Quantize(),
            targets=None,
            context=Context(data=DataSplits(calibration=wrong), example_input=good[0][0][:1]),
        ),
        "empty calibration set": lambda: quantize_handler(
            model, Quantize(), targets=None, context=Context(data=DataSplits(calibration=[]))
        ),
    }
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rows = {}
    for name, fn in cases.items():
        try:
            fn()
            rows[name] = {"error": None, "message": "no error raised"}
        except TorchSlimError as exc:
            rows[name] = {"error": type(exc).__name__, "message": str(exc)[:200]}
    unchanged = all(torch.equal(before[k], v) for k, v in model.state_dict().items()) and not model_plan(model)
    ok = all(r["error"] for r in rows.values()) and unchanged
    check(
        results,
        "bad input: clear error before any work, model unchanged",
        "every case raises; model unchanged",
        f"{sum(bool(r['error']) for r in rows.values())}/{len(rows)} raised; unchanged={unchanged}",
        ok,
    )
    return {"cases": rows, "model_unchanged": unchanged}


SECTIONS: dict[str, Callable[[argparse.Namespace, dict[str, Any]], dict[str, Any]]] = {
    "fmnist": section_fmnist,
    "resnet": section_resnet,
    "minilm": section_minilm,
    "efficientnet": section_efficientnet,
    "bad_input": section_bad_input,
}


# ------------------------------------------------------------------------------------------------
# report


def _fmt(value: Any, kind: str = "") -> str:
    if value is None:
        return "-"
    if kind == "pct":
        return f"{100 * value:.2f}%"
    if kind == "bytes":
        return f"{int(value):,}"
    if kind == "x":
        return f"{value:.3f}x"
    if isinstance(value, float):
        return f"{value:.4g}" if not math.isnan(value) else "nan"
    return str(value)


def to_markdown(results: dict[str, Any]) -> str:
    env = results["env"]
    lines = [
        f"# Quantization benchmark ({'quick' if results['quick'] else 'full'} run)",
        "",
        f"{env_line(env)}; {results.get('seconds', 0):.0f} s.",
        "",
    ]
    for merged in results.get("merged_sections", []):
        lines += [f"Section `{merged['section']}` rerun on {merged['date']} ({merged['command']}) and merged here.", ""]
    lines += ["## Must-show checks", "", "| claim | target | measured | verdict |", "|---|---|---|---|"]
    for c in results.get("checks", []):
        verdict = "reported" if c["ok"] is None else ("met" if c["ok"] else "NOT met")
        lines.append(f"| {c['claim']} | {c['target']} | {c['measured']} | {verdict} |")
    sec = results["sections"]
    fm = sec.get("fmnist")
    if isinstance(fm, dict) and "variants" in fm:
        lines += [
            "",
            f"## fmnist-cnn (float accuracy {100 * fm['float_acc']:.2f}%)",
            "",
            "| variant | test acc | bytes | ms b64 | vs ORT fp32 b64 | speed-up vs eager b64 | ms b1 "
            "| vs ORT fp32 b1 |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, row in fm["variants"].items():
            if "note" in row:
                lines.append(f"| {name} | {row['note']} | | | | | | |")
                continue
            lines.append(
                f"| {name} | {_fmt(row.get('acc'), 'pct')} | {_fmt(row.get('bytes'), 'bytes')} | "
                f"{_fmt(row.get('ms_b64'))} | {_fmt(row.get('vs_ort_fp32_b64'), 'x')} | "
                f"{_fmt(row.get('speedup_vs_eager_b64'))} | {_fmt(row.get('ms_b1'))} | "
                f"{_fmt(row.get('vs_ort_fp32_b1'), 'x')} |"
            )
        lines += [
            "",
            "ms and ratios of onnxruntime fp32, onnxruntime quantize_static and torchslim deployed come from "
            "rounds of these onnxruntime sessions alone, the ExecuTorch (XNNPACK) rows from rounds of their own "
            "(ratio to ExecuTorch fp32 there); the other rows (and the speed-ups vs eager) from rounds of all "
            "variants, PyTorch included.",
            "",
            f"- onnxruntime ops of torchslim's int8 model: {fm.get('torchslim_onnx_ops')}",
            f"- ONNX vs simulated output: {fm.get('onnx_parity')}",
            *[
                f"- runtime sessions alone, {label}: "
                + ", ".join(f"{name} {row['ms']} ms ({row['ratio']:.3f}x)" for name, row in lat.items())
                for label, lat in fm.get("ort_only", {}).items()
            ],
            "",
            "| QAT | accuracy | drop (points) | PTQ accuracy (method) | artifact bytes | steps | seconds |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, row in fm.get("qat", {}).items():
            lines.append(
                f"| {name} weights, 8-bit activations | {_fmt(row['qat_acc'], 'pct')} | {row['qat_drop_points']} | "
                f"{_fmt(row['ptq_acc'], 'pct')} ({row['ptq_method']}) | {_fmt(row['artifact_bytes'], 'bytes')} | "
                f"{row['qat_steps']} | {row['qat_seconds']} |"
            )
        lines += [
            "",
            "Per-layer report of the int8 step:",
            "",
            "| layer | bits | activations | weight SQNR dB | output SQNR dB |",
            "|---|---|---|---|---|",
        ]
        for r in fm.get("torchslim_int8_layers", []):
            lines.append(
                f"| {r['layer']} | {r['weight_bits']} | {r['activations']} | {r['weight_sqnr_db']} | "
                f"{r['output_sqnr_db']} |"
            )
    rn = sec.get("resnet")
    if isinstance(rn, dict) and "rows" in rn:
        lines += [
            "",
            f"## fmnist-resnet int8 (float accuracy {100 * rn['float_acc']:.2f}%)",
            "",
            "| variant | test acc | bytes | integer kernels in onnxruntime |",
            "|---|---|---|---|",
        ]
        for name, row in rn["rows"].items():
            lines.append(
                f"| {name} | {_fmt(row['acc'], 'pct')} | {_fmt(row['bytes'], 'bytes')} | {row.get('integer_ops', '')} |"
            )
        for label, lat in rn["latency"].items():
            lines += [
                "",
                f"Latency, {label}, runtime sessions alone (ratio to onnxruntime fp32; ExecuTorch rows: to "
                "ExecuTorch fp32, in rounds of their own):",
                "",
                "| variant | ms | ratio |",
                "|---|---|---|",
            ]
            lines += [f"| {name} | {row['ms']} | {row['ratio']:.3f}x |" for name, row in lat.items()]
        lines += [
            "",
            f"- convolutions given int8 outputs (residual branches): {rn['int8_outputs']}",
            f"- ONNX vs simulated output: {rn['onnx_parity']}",
        ]
    ml = sec.get("minilm")
    if isinstance(ml, dict) and "rows" in ml:
        lines += [
            "",
            f"## MiniLM-L6 ({ml['texts']} tweets; fp32 reference pair cosine {ml['fp32_pair_cosine']})",
            "",
            "| variant | mean cosine | min cosine | pair cosine | bytes |",
            "|---|---|---|---|---|",
        ]
        for name, row in ml["rows"].items():
            if "note" in row:
                lines.append(f"| {name} | {row['note']} | | | |")
                continue
            lines.append(
                f"| {name} | {row['mean_cosine']} | {row['min_cosine']} | {row['pair_cosine']} | "
                f"{_fmt(row.get('bytes'), 'bytes')} |"
            )
        for key, lat in ml["latency"].items():
            lines += [
                "",
                f"Latency {key} (ratio = variant / PyTorch fp32, median of per-round ratios):",
                "",
                "| variant | ms | ratio |",
                "|---|---|---|",
            ]
            for name, row in lat.items():
                lines.append(f"| {name} | {row['ms']} | {row['ratio']:.3f}x |")
    ef = sec.get("efficientnet")
    if isinstance(ef, dict) and "rows" in ef:
        lines += [
            "",
            f"## EfficientNet-Lite0 int8 PTQ ({ef['calibration_crops']} calibration crops, "
            f"{ef['held_out_crops']} crops of other, held-out photos)",
            "",
            "| granularity | top-1 agreement | output SQNR dB (calibration) | seconds |",
            "|---|---|---|---|",
        ]
        for name, row in ef["rows"].items():
            lines.append(
                f"| {name} | {row['top1_agreement']:.3f} | {row['output_sqnr_db_calibration']} | {row['seconds']} |"
            )
        lines += ["", f"- best model in onnxruntime: {ef.get('best_onnx')}"]
        for name, row in (ef.get("latency_b8") or {}).items():
            lines.append(f"- latency, batch 8, onnxruntime sessions alone: {name} {row['ms']} ms ({row['ratio']:.3f}x)")
    bi = sec.get("bad_input")
    if isinstance(bi, dict) and "cases" in bi:
        lines += ["", "## Bad input", "", "| case | error | message |", "|---|---|---|"]
        for name, row in bi["cases"].items():
            lines.append(f"| {name} | {row['error']} | {row['message'].replace('|', '/')} |")
        lines.append(f"\nmodel unchanged after all cases: {bi['model_unchanged']}")
    for name, value in sec.items():
        if isinstance(value, dict) and "error" in value and len(value) <= 2:
            lines += ["", f"## {name}: FAILED", "", "```", value["error"], "```"]
    return "\n".join(lines) + "\n"


def merge_section(results_path: Path, rerun_path: Path, section: str, command: str) -> None:
    """Replace one section (and its checks) of a full run's results with those of a rerun of only
    that section (``--only SECTION --out DIR``), then rewrite the .json and .md."""
    import json

    full, rerun = json.loads(results_path.read_text()), json.loads(rerun_path.read_text())
    full["sections"][section] = rerun["sections"][section]
    prefix = {
        "minilm": "minilm-l6",
        "fmnist": "fmnist-cnn",
        "resnet": "fmnist-resnet",
        "efficientnet": "efficientnet-lite0",
        "bad_input": "bad input",
    }[section]
    full["checks"] = [c for c in full.get("checks", []) if not c["claim"].startswith(prefix)] + [
        c for c in rerun.get("checks", []) if c["claim"].startswith(prefix)
    ]
    full.setdefault("merged_sections", []).append(
        {"section": section, "date": rerun["env"]["date"], "command": command}
    )
    write_results(results_path.parent, results_path.stem, full, to_markdown(full))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data, few rounds: a < 3 minute smoke run")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {list(SECTIONS)}")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=None, help="latency rounds (default 10 quick, 40 full)")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    default_cache = Path(os.environ.get("TORCHSLIM_CACHE") or "~/.cache/torchslim").expanduser() / "benchmarks"
    parser.add_argument("--cache", type=Path, default=default_cache, help="where the trained fmnist-cnn is kept")
    parser.add_argument("--no-cache", action="store_true", help="always train the float fmnist-cnn")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="with --only: replace those sections (and their checks) in OUT/quantization.json "
        "instead of writing a results file of these sections alone",
    )
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (10 if args.quick else 40)
    torch.set_num_threads(args.threads)
    results: dict[str, Any] = new_results(quick=args.quick, threads=args.threads, checks=[])
    started = time.perf_counter()
    results["sections"] = run_sections(args.only, SECTIONS, lambda fn: fn(args, results), error=parser.error)
    results["seconds"] = round(time.perf_counter() - started, 1)
    stem = "quantization_quick" if args.quick else "quantization"
    if args.merge:
        rerun = args.out / f"{stem}_rerun.json"
        write_results(args.out, f"{stem}_rerun", results, to_markdown(results))
        for section in results["sections"]:
            merge_section(
                args.out / f"{stem}.json",
                rerun,
                section,
                f"python benchmarks/quantization.py --only {args.only} --merge",
            )
        rerun.unlink()
        rerun.with_suffix(".md").unlink()
        log(f"merged {list(results['sections'])} into {args.out / (stem + '.json')} and .md")
        return 0
    write_results(args.out, stem, results, to_markdown(results))
    log(f"wrote {args.out / (stem + '.json')} and .md in {results['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
