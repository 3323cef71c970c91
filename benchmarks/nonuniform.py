"""Non-uniform, binary and ternary weights and Deep Compression (issue 18, "Must show"), next to the
maintained PyTorch-side peers, on the same trained weights and data.

    python benchmarks/nonuniform.py --quick      # smoke run: 2,048 training images, a few minutes
    python benchmarks/nonuniform.py              # full run (Fashion-MNIST, 54,000 training images)
    python benchmarks/nonuniform.py --only coreml,brevitas   # some sections; the others are kept

Setting. Fashion-MNIST (torchslim.data.load_splits, seed 0: train 54,000 / test 10,000), models
``lenet-300-100`` and ``fmnist-cnn`` trained once with fixed seeds (Adam, cosine) and cached as
safetensors under ``benchmarks/.cache/nonuniform`` (gitignored). That file's size is the fp32
reference of every "x smaller"; its sha256 is printed with every section, so every row is known to
start from the same weights. Accuracy is test accuracy in PyTorch, 1 thread.

Sections (each runs in its own process if you like: results are kept per section and the report is
rebuilt from all of them):

* ``baseline``: the two trained fp32 models: accuracy, safetensors bytes, digest.
* ``coreml``: ``coremltools.optimize.torch`` ``PostTrainingPalettizer`` (k-means, per tensor) at 2, 3
  and 4 bits on both models. Bytes: the ``.mlpackage`` coremltools writes (on Linux too) and a count
  of fp32 codebooks + b-bit packed indices + fp32 biases.
* ``dkm``: coremltools ``DKMPalettizer`` (training-time differentiable k-means) at 2, 3, 4 bits, trained
  through torchslim's loop with the same budget as torchslim's k-means fine-tuning (``--ft-steps``).
* ``kmeans``: torchslim ``kmeans_quant`` through ``ts.compress`` with a Recipe at 2, 3, 4 bits, post-
  training and fine-tuned with the same budget; bytes of the saved artifact folder.
* ``kmeans_sqnr``: the weight SQNR of both post-training k-means fits on the same weights.
* ``brevitas``: Brevitas binary / ternary weights on fmnist-cnn (first and last layers 8-bit), trained
  with torchslim's binary budget; bytes of its state_dict file and the ideal packed size (computed).
* ``binary``: torchslim ``binarize`` / ``ternarize`` on fmnist-cnn (benchmarks/_nonuniform_binary.py).
* ``deep_compression``: torchslim recipe ``deep-compression`` on lenet-300-100
  (benchmarks/_nonuniform_torchslim.py).

``--models``, ``--bits`` and ``--kinds`` run part of a section; parts are stored separately under
``benchmarks/.cache/nonuniform/sections`` and merged, so parts can run as parallel processes (each at 1
thread), e.g. ``--only dkm --models fmnist-cnn --bits 3``. ``--report-only`` rebuilds the results.

Writes ``benchmarks/results/nonuniform[_quick].json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import copy
import functools
import inspect
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))
sys.path.insert(0, str(ROOT))

import _nonuniform_peers as peers  # noqa: E402
from _harness import env_line, environment, log, md_table, run_sections, write_results  # noqa: E402

MODELS = ("lenet-300-100", "fmnist-cnn")
BITS = (2, 3, 4)
BINARY_KINDS = ("binary", "ternary", "ttq")  # ttq: ternary with trained scales; its Brevitas peers are ternary
BASELINE_TRAIN = {"lenet-300-100": {"epochs": 8, "lr": 1e-3}, "fmnist-cnn": {"epochs": 4, "lr": 1e-3}}
# the budget of torchslim's straight-through training when part B's module does not say
# (src/torchslim/quantization/binary_config.py BINARY_TRAIN_DEFAULTS)
BINARY_BUDGET_FALLBACK = {"epochs": 3, "lr": 1e-3, "schedule": "cosine"}
GOALS = {
    "deep_compression": {"model": "lenet-300-100", "min_ratio": 50.0, "max_drop": 0.3},
    "binary": {"model": "fmnist-cnn", "min_ratio": 25.0, "max_drop": 3.0},
    "ternary": {"model": "fmnist-cnn", "min_ratio": 14.0, "max_drop": 1.5},
}
BREVITAS_VARIANTS = "per_channel,shipped"
LEVEL_TOLERANCE = 0.1  # points of accuracy within which torchslim counts as level with a peer


# ------------------------------------------------------------------------------------------------
# the shared setting


class Bench:
    """The data and the trained fp32 models every section shares (loaded once per process)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tag = "quick" if args.quick else "full"
        self.cache = args.cache
        self._baselines: dict[str, dict[str, Any]] = {}

    @functools.cached_property
    def splits(self) -> Any:
        from torchslim.data import load_splits

        if self.args.quick:
            return load_splits(
                "fashion-mnist", batch_size=128, train_samples=2048, eval_samples=1000, seed=self.args.seed
            )
        return load_splits("fashion-mnist", batch_size=128, seed=self.args.seed)

    def models(self, quick_default: tuple[str, ...] = MODELS) -> list[str]:
        """The models a section runs on (``--models``; default both, or `quick_default` with --quick)."""
        chosen = self.args.models.split(",") if self.args.models else list(quick_default if self.args.quick else MODELS)
        unknown = set(chosen) - set(MODELS)
        if unknown:
            raise ValueError(f"--models: {sorted(unknown)} not in {MODELS}")
        return chosen

    def bits(self) -> list[int]:
        """The k-means bit widths a section runs (``--bits``; default 2, 3, 4)."""
        return [int(b) for b in self.args.bits.split(",")] if self.args.bits else list(BITS)

    def kinds(self) -> list[str]:
        """The binary kinds a section runs (``--kinds``; default all)."""
        return self.args.kinds.split(",") if self.args.kinds else list(BINARY_KINDS)

    def baseline_file(self, name: str) -> Path:
        return self.cache / f"{name}-{self.tag}-seed{self.args.seed}.safetensors"

    def baseline(self, name: str) -> dict[str, Any]:
        """The trained fp32 `name`: ``model``, ``accuracy``, ``bytes`` (its safetensors file), ``sha256``."""
        if name not in self._baselines:
            self._baselines[name] = self._load_or_train(name)
        return self._baselines[name]

    def fresh(self, name: str) -> nn.Module:
        """A copy of the trained model (every row starts from these weights)."""
        return copy.deepcopy(self.baseline(name)["model"]).eval()

    def train_settings(self, name: str) -> dict[str, Any]:
        settings = dict(BASELINE_TRAIN[name], schedule="cosine")
        if self.args.quick:
            settings["epochs"] = 2
        return settings

    def _load_or_train(self, name: str) -> dict[str, Any]:
        from safetensors.torch import load_file

        from torchslim.models import build_model
        from torchslim.train import TrainConfig, train

        path = self.baseline_file(name)
        meta_path = path.with_suffix(".json")
        key = {"model": name, "train": self.train_settings(name), "seed": self.args.seed, "data": self.tag}
        model = build_model(name, seed=self.args.seed)
        cached = path.is_file() and meta_path.is_file() and json.loads(meta_path.read_text()).get("key") == key
        started = time.perf_counter()
        if cached:
            model.load_state_dict(load_file(str(path)))
        else:
            log(f"  training the fp32 {name} ({key['train']})")
            train(model, self.splits.train, config=TrainConfig(**key["train"]), seed=self.args.seed, quiet=True)
            staging = path.with_name(f"{path.stem}.{os.getpid()}.tmp")
            peers.save_state(model.state_dict(), staging)
            os.replace(staging, path)  # atomic: a process that runs beside this one never reads half a file
            meta_path.write_text(json.dumps({"key": key}, indent=1))
        model.eval()
        return {
            "model": model,
            "accuracy": accuracy(model, self.splits.test),
            "bytes": path.stat().st_size,
            "sha256": peers.state_sha256(model),
            "params": sum(p.numel() for p in model.parameters()),
            "cached": cached,
            "train": key["train"],
            "seconds": time.perf_counter() - started,
        }

    def reference(self, name: str) -> dict[str, Any]:
        """What a row needs of its baseline: accuracy, bytes, digest."""
        base = self.baseline(name)
        return {k: base[k] for k in ("accuracy", "bytes", "sha256")}

    def example(self) -> torch.Tensor:
        return next(iter(self.splits.test))[0][:1]


def accuracy(model: nn.Module, loader: Any) -> float:
    from torchslim.measure import evaluate

    return float(evaluate(model, loader).accuracy)


def row(bench: Bench, name: str, model: nn.Module, nbytes: int | None, **extra: Any) -> dict[str, Any]:
    """One result row: accuracy, drop in points against the fp32 model, bytes, x smaller than the fp32 file."""
    ref = bench.reference(name)
    acc = accuracy(model, bench.splits.test)
    return {
        "model": name,
        "accuracy": acc,
        "drop_points": round(100 * (ref["accuracy"] - acc), 3),
        "bytes": nbytes,
        "x_smaller": round(ref["bytes"] / nbytes, 2) if nbytes else None,
        **extra,
    }


def finetune_config(bench: Bench) -> Any:
    """The fine-tuning budget of both training-time k-means rows (torchslim and DKM)."""
    from torchslim.train import TrainConfig

    steps = 5 if bench.args.quick else bench.args.ft_steps
    return TrainConfig(epochs=1, max_steps=steps, lr=bench.args.ft_lr, schedule="cosine")


def binary_defaults() -> dict[str, Any]:
    """torchslim's straight-through budget: the ``binarize`` / ``ternarize`` config defaults."""
    try:
        from torchslim.quantization.binary_config import BINARY_TRAIN_DEFAULTS

        return dict(BINARY_TRAIN_DEFAULTS)
    except ImportError:
        return dict(BINARY_BUDGET_FALLBACK)


def binary_budget(bench: Bench) -> dict[str, Any]:
    """torchslim's straight-through budget (its config's defaults), used for the Brevitas rows too."""
    budget = binary_defaults()
    if bench.args.quick:
        budget["epochs"] = 1
    if bench.args.binary_epochs is not None:
        budget["epochs"] = bench.args.binary_epochs
    return budget


# ------------------------------------------------------------------------------------------------
# sections


def section_baseline(bench: Bench) -> dict[str, Any]:
    out = {}
    for name in MODELS:
        base = bench.baseline(name)
        out[name] = {k: v for k, v in base.items() if k != "model"}
        log(f"  {name}: accuracy {base['accuracy']:.4f}, {base['bytes']:,} bytes, sha256 {base['sha256'][:12]}")
    return {"models": out}


def section_coreml(bench: Bench) -> dict[str, Any]:
    peers.quiet_coremltools()  # imports coremltools outside the timed calls
    rows = []
    for name in bench.models():
        for bits in bench.bits():
            started = time.perf_counter()
            model = peers.coreml_ptq(bench.fresh(name), bits)
            seconds = time.perf_counter() - started
            rows.append(coreml_row(bench, name, model, bits, method="coremltools PostTrainingPalettizer", s=seconds))
    return {"rows": rows, "baselines": {n: bench.reference(n) for n in bench.models()}}


def coreml_row(bench: Bench, name: str, model: nn.Module, bits: int, *, method: str, s: float) -> dict[str, Any]:
    counted = peers.coreml_counted_bytes(model, bits)
    package, note = peers.coreml_package_bytes(model, bench.example())
    sizes = peers.coreml_palette_sizes(model)
    out = row(
        bench,
        name,
        model,
        package if package is not None else counted["total"],
        bits=bits,
        method=method,
        bytes_kind="mlpackage" if package is not None else "counted",
        counted_bytes=counted,
        package_bytes=package,
        package_note=note,
        max_palette=max(sizes.values()) if sizes else None,
        layers_palettized=len(sizes),
        seconds=round(s, 1),
    )
    log(f"  {name} {bits}-bit {method}: {out['accuracy']:.4f}, {out['bytes']:,} bytes ({out['bytes_kind']})")
    return out


def section_dkm(bench: Bench) -> dict[str, Any]:
    config = finetune_config(bench)
    rows = []
    for name in bench.models(quick_default=MODELS[:1]):  # DKM is slow on CPU
        for bits in bench.bits():
            started = time.perf_counter()
            model = peers.coreml_dkm(bench.fresh(name), bits, bench.splits.train, train_config=config, seed=0)
            seconds = time.perf_counter() - started
            rows.append(coreml_row(bench, name, model, bits, method="coremltools DKMPalettizer", s=seconds))
    models = bench.models(quick_default=MODELS[:1])
    return {"rows": rows, "budget": config.to_dict(), "baselines": {n: bench.reference(n) for n in models}}


def kmeans_recipe(bits: int, train: Any | None) -> Any:
    """torchslim ``kmeans_quant`` at `bits` (post-training when `train` is None)."""
    from torchslim.core import Recipe

    config: dict[str, Any] = {"bits": bits}
    if train is not None:
        config["train"] = train.to_dict()
    return Recipe.from_dict({"version": 1, "steps": [{"technique": "kmeans_quant", "config": config}]})


def saved_bytes(model: nn.Module) -> dict[str, int]:
    """Bytes of the torchslim artifact folder (``torchslim.io.save``), total and per file."""
    from torchslim.io import save

    with tempfile.TemporaryDirectory() as tmp:
        path = save(model, Path(tmp) / "artifact")
        files = {str(p.relative_to(path)): p.stat().st_size for p in sorted(path.rglob("*")) if p.is_file()}
    return {"total": sum(files.values()), **files}


def section_kmeans(bench: Bench) -> dict[str, Any]:
    import torchslim as ts

    rows = []
    for name in bench.models():
        for bits in bench.bits():
            for train in (None, finetune_config(bench)):
                started = time.perf_counter()
                result = ts.compress(
                    bench.fresh(name),
                    bench.splits,
                    recipe=kmeans_recipe(bits, train),
                    seed=0,
                    threads=1,
                    repeats=3,
                    quiet=True,
                    runtime="pytorch",
                )
                seconds = time.perf_counter() - started
                files = saved_bytes(result.model)
                method = "torchslim kmeans_quant" + (" + fine-tuning" if train else " (post-training)")
                out = row(bench, name, result.model, files["total"], bits=bits, method=method, files=files)
                out["seconds"] = round(seconds, 1)
                rows.append(out)
                log(f"  {name} {bits}-bit {method}: {out['accuracy']:.4f}, {out['bytes']:,} bytes")
    baselines = {n: bench.reference(n) for n in bench.models()}
    return {"rows": rows, "budget": finetune_config(bench).to_dict(), "baselines": baselines}


def weight_sqnr_db(original: nn.Module, quantized: nn.Module) -> float:
    """Weight SQNR over every Conv2d / Linear weight: 10 log10(sum w^2 / sum (w - w_hat)^2), where w_hat is
    a torchslim layer's ``effective_weight()`` or the (palettized) ``weight`` of any other layer."""
    from torchslim.core.layer import compressed_layers

    effective = {name: layer.effective_weight().detach() for name, layer in compressed_layers(quantized)}
    signal = noise = 0.0
    with torch.no_grad():
        for name in peers.weight_layers(original):
            w = original.get_submodule(name).weight
            w_hat = effective.get(name)
            if w_hat is None:
                w_hat = quantized.get_submodule(name).weight
            signal += float((w**2).sum())
            noise += float(((w - w_hat.reshape(w.shape)) ** 2).sum())
    return round(10 * math.log10(signal / noise), 3) if noise > 0 else math.inf


def section_kmeans_sqnr(bench: Bench) -> dict[str, Any]:
    """Post-training k-means of both sides on the same weights: which clustering fits the weights better
    (the weight SQNR, higher is better) explains an accuracy gap between the post-training rows."""
    import torchslim as ts

    peers.quiet_coremltools()
    rows = []
    for name in bench.models():
        original = bench.fresh(name)
        for bits in bench.bits():
            ours = ts.compress(
                bench.fresh(name),
                bench.splits,
                recipe=kmeans_recipe(bits, None),
                threads=1,
                repeats=1,
                quiet=True,
                runtime="pytorch",
            ).model
            theirs = peers.coreml_ptq(bench.fresh(name), bits)
            out = {"model": name, "bits": bits}
            out["torchslim_sqnr_db"] = weight_sqnr_db(original, ours)
            out["coremltools_sqnr_db"] = weight_sqnr_db(original, theirs)
            rows.append(out)
            log(f"  {name} {bits}-bit weight SQNR dB: {out}")
    return {"rows": rows, "baselines": {n: bench.reference(n) for n in bench.models()}}


def section_brevitas(bench: Bench) -> dict[str, Any]:
    from torchslim.train import TrainConfig, train

    budget = binary_budget(bench)
    rows = []
    for kind in [k for k in bench.kinds() if k in ("binary", "ternary")]:
        for variant in bench.args.brevitas_variants.split(","):
            started = time.perf_counter()
            model = peers.brevitas_model(bench.fresh("fmnist-cnn"), kind, variant)
            train(model, bench.splits.train, config=TrainConfig(**budget), seed=0, quiet=True)
            model.eval()
            with tempfile.TemporaryDirectory() as tmp:
                state_bytes = peers.brevitas_state_file_bytes(model, Path(tmp) / "brevitas.safetensors")
            ideal = peers.brevitas_ideal_bytes(model)
            out = row(bench, "fmnist-cnn", model, ideal["total"], kind=kind, method=f"Brevitas {variant}")
            out.update(
                bytes_kind="ideal packed (computed)",
                state_file_bytes=state_bytes,
                ideal_bytes=ideal,
                layers=peers.brevitas_layer_values(model),
                seconds=round(time.perf_counter() - started, 1),
            )
            rows.append(out)
            log(f"  brevitas {kind} {variant}: {out['accuracy']:.4f}, ideal {ideal['total']:,} / file {state_bytes:,}")
    return {"rows": rows, "budget": budget, "baselines": {"fmnist-cnn": bench.reference("fmnist-cnn")}}


def _pick(found: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if found.get(key) is not None:
            return found[key]
    return None


def torchslim_row(bench: Bench, name: str, found: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A row from what part A / B's runner returned (accuracy and artifact bytes, whatever their keys)."""
    ref = bench.reference(name)
    acc = _pick(found, "accuracy", "test_accuracy", "acc")
    nbytes = _pick(found, "artifact_bytes", "bytes", "file_bytes", "size_bytes", "disk_bytes")
    return {
        "model": name,
        "accuracy": acc,
        "drop_points": round(100 * (ref["accuracy"] - acc), 3) if acc is not None else None,
        "bytes": nbytes,
        "x_smaller": round(ref["bytes"] / nbytes, 2) if nbytes else None,
        "reported": {k: v for k, v in found.items() if isinstance(v, (int, float, str, bool, list, dict, type(None)))},
        **extra,
    }


def section_binary(bench: Bench) -> dict[str, Any]:
    from _nonuniform_binary import run_binary  # part B of issue 18

    budget = binary_budget(bench)
    accepted = inspect.signature(run_binary).parameters
    options = {k: v for k, v in budget.items() if k in ("epochs", "lr") and k in accepted}
    if "float_accuracy" in accepted:
        options["float_accuracy"] = bench.reference("fmnist-cnn")["accuracy"]
    rows = []
    for kind in bench.kinds():
        started = time.perf_counter()
        found = run_binary(bench.fresh("fmnist-cnn"), bench.splits, seed=bench.args.seed, kind=kind, **options)
        out = torchslim_row(bench, "fmnist-cnn", found, kind=kind, method=f"torchslim {kind}")
        out["seconds"] = round(time.perf_counter() - started, 1)
        rows.append(out)
        log(f"  torchslim {kind}: {out['accuracy']}, {out['bytes']} bytes")
    return {"rows": rows, "budget": budget, "baselines": {"fmnist-cnn": bench.reference("fmnist-cnn")}}


def section_deep_compression(bench: Bench) -> dict[str, Any]:
    from _nonuniform_torchslim import run_deep_compression  # part A of issue 18

    started = time.perf_counter()
    found = run_deep_compression(bench.fresh("lenet-300-100"), bench.splits, seed=bench.args.seed)
    out = torchslim_row(bench, "lenet-300-100", found, method="torchslim deep-compression")
    out["seconds"] = round(time.perf_counter() - started, 1)
    log(f"  deep-compression: {out['accuracy']}, {out['bytes']} bytes, {out['x_smaller']}x")
    return {"rows": [out], "baselines": {"lenet-300-100": bench.reference("lenet-300-100")}}


SECTIONS: dict[str, Callable[[Bench], dict[str, Any]]] = {
    "baseline": section_baseline,
    "coreml": section_coreml,
    "dkm": section_dkm,
    "kmeans_sqnr": section_kmeans_sqnr,
    "kmeans": section_kmeans,
    "brevitas": section_brevitas,
    "binary": section_binary,
    "deep_compression": section_deep_compression,
}


# ------------------------------------------------------------------------------------------------
# verdicts


def verdict(ours: dict[str, Any], peer: dict[str, Any] | None) -> tuple[bool | None, str]:
    """Whether torchslim is level on accuracy (within LEVEL_TOLERANCE points) and smaller on disk than
    `peer` (its ``bytes``: coremltools' .mlpackage file, Brevitas' ideal packed size), and why not."""
    if peer is None or ours.get("accuracy") is None or peer.get("accuracy") is None:
        return None, "no peer row to compare with" if peer is None else "a row has no accuracy"
    why = []
    gap = 100 * (peer["accuracy"] - ours["accuracy"])
    if gap > LEVEL_TOLERANCE:
        why.append(f"accuracy {gap:.2f} points below {peer['method']}")
    manifest = sum(v for k, v in (ours.get("files") or {}).items() if k.endswith(".json"))
    if ours.get("bytes") and peer.get("bytes") and ours["bytes"] >= peer["bytes"]:
        why.append(
            f"{ours['bytes'] - peer['bytes']:,} bytes larger than {peer['method']} ({peer['bytes']:,})"
            + (f"; the artifact's JSON plan/manifest alone is {manifest:,} bytes" if manifest else "")
        )
    note = ""
    counted = (peer.get("counted_bytes") or {}).get("total")
    if counted and ours.get("bytes") and ours["bytes"] > counted:
        note = (
            f" (but {ours['bytes'] - counted:,} bytes above the peer's counted payload {counted:,}, "
            f"which has no container; the JSON plan is {manifest:,})"
        )
    if peer.get("state_file_bytes") and ours.get("bytes"):
        note += (
            f" (the peer's bytes are computed: the file Brevitas writes, its state_dict, is "
            f"{peer['state_file_bytes']:,} bytes, {peer['state_file_bytes'] / ours['bytes']:.1f}x torchslim's file)"
        )
    return not why, ("; ".join(why) or "level or better on accuracy and smaller on disk") + note


def find(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()):
            return r
    return None


def goal_checks(sections: dict[str, Any]) -> list[dict[str, Any]]:
    rows = list((sections.get("deep_compression") or {}).get("rows", []))
    rows += (sections.get("binary") or {}).get("rows", [])
    checks = []
    for goal, spec in GOALS.items():
        found = find(rows, method="torchslim deep-compression") if goal == "deep_compression" else find(rows, kind=goal)
        claim = f"{spec['model']} {goal}: >= {spec['min_ratio']:g}x smaller, drop <= {spec['max_drop']:g} points"
        if found is None or found.get("accuracy") is None or not found.get("x_smaller"):
            checks.append({"claim": claim, "measured": "not run (torchslim side missing)", "ok": None})
            continue
        ok = found["x_smaller"] >= spec["min_ratio"] and found["drop_points"] <= spec["max_drop"]
        measured = f"{found['x_smaller']}x, drop {found['drop_points']:.2f} points ({found['accuracy']:.4f})"
        checks.append({"claim": claim, "measured": measured, "ok": ok})
    return checks


# ------------------------------------------------------------------------------------------------
# markdown


def fmt_bytes(n: Any) -> str:
    return f"{n:,}" if isinstance(n, int) else "-"


def fmt_acc(row: dict[str, Any]) -> str:
    if row.get("accuracy") is None:
        return "-"
    return f"{100 * row['accuracy']:.2f} ({-row['drop_points']:+.2f})"


def ok_text(ok: bool | None) -> str:
    return {True: "yes", False: "NO", None: "-"}[ok]


def kmeans_lines(sections: dict[str, Any]) -> list[str]:
    ours = (sections.get("kmeans") or {}).get("rows", [])
    ptq = (sections.get("coreml") or {}).get("rows", [])
    dkm = (sections.get("dkm") or {}).get("rows", [])
    sqnr = (sections.get("kmeans_sqnr") or {}).get("rows", [])
    lines = ["## k-means weight sharing: torchslim vs coremltools palettization", ""]
    lines.append(
        "Accuracy in % (change vs fp32 in points). Bytes: torchslim = the saved artifact folder "
        "(safetensors + JSON plan); coremltools = the .mlpackage it writes (fp16 LUTs), with the counted "
        "size (fp32 codebooks + packed indices + fp32 biases) beside it. Verdict against the peer of the "
        "same kind (post-training vs PostTrainingPalettizer, fine-tuned vs DKMPalettizer)."
    )
    lines.append("")
    headers = [
        "model",
        "bits",
        "method",
        "accuracy",
        "bytes on disk",
        "x smaller",
        "counted bytes",
        "seconds",
        "verdict",
    ]
    table = []
    for name in MODELS:
        for bits in BITS:
            peer_ptq = find(ptq, model=name, bits=bits)
            peer_dkm = find(dkm, model=name, bits=bits)
            for r in [find(ours, model=name, bits=bits, method=m) for m in KMEANS_METHODS] + [peer_ptq, peer_dkm]:
                if r is None:
                    continue
                cell = "peer"
                if r["method"].startswith("torchslim"):
                    ok, why = verdict(r, peer_dkm if "fine-tuning" in r["method"] else peer_ptq)
                    cell = f"{ok_text(ok)}: {why}"
                    fit = find(sqnr, model=name, bits=bits)
                    if fit and "fine-tuning" not in r["method"]:
                        cell += (
                            f"; weight SQNR {fit['torchslim_sqnr_db']} dB vs coremltools "
                            f"{fit['coremltools_sqnr_db']} dB (the k-means fit)"
                        )
                counted = (r.get("counted_bytes") or {}).get("total")
                table.append(
                    [
                        name,
                        bits,
                        r["method"],
                        fmt_acc(r),
                        fmt_bytes(r["bytes"]),
                        r["x_smaller"],
                        fmt_bytes(counted),
                        r.get("seconds"),
                        cell,
                    ]
                )
    lines += md_table(headers, table) if table else ["(no k-means rows yet)"]
    if sqnr:
        lines += [
            "",
            "Weight SQNR of the post-training k-means (all Conv2d/Linear weights, dB, higher fits better):",
            "",
        ]
        lines += md_table(
            ["model", "bits", "torchslim", "coremltools"],
            [[r["model"], r["bits"], r["torchslim_sqnr_db"], r["coremltools_sqnr_db"]] for r in sqnr],
        )
    return lines + ["", *KMEANS_NOTES, ""]


KMEANS_NOTES = (
    "Why rows differ. Post-training, both sides cluster each layer's weights into one codebook per "
    "tensor (every Conv2d/Linear including the head), but differently: coremltools rounds the weights to "
    "fp16 and runs kmeans1d, the exact (globally optimal) 1-D k-means by dynamic programming (Gronlund et "
    "al. 2017); torchslim runs Lloyd's iterations from a linear init (the Deep Compression paper's "
    "choice, at most 30 iterations), which stops in a local optimum: the weight SQNR table shows the "
    "fit of both. "
    "Fine-tuned, torchslim does what Deep Compression does: the indices stay fixed and only "
    "the centroids (and biases) move, by the summed gradient of their weights; DKMPalettizer trains the "
    "latent float weights through a soft (attention) assignment and re-clusters every step, far more "
    "freedom at a far higher cost per step (the seconds column, same steps, same loop and data order). "
    "On disk, torchslim's artifact is a safetensors file (packed indices, fp32 codebooks and biases) "
    "plus its JSON plan; the .mlpackage keeps fp16 codebooks and biases plus a protobuf program.",
)


KMEANS_METHODS = ("torchslim kmeans_quant (post-training)", "torchslim kmeans_quant + fine-tuning")


def binary_lines(sections: dict[str, Any]) -> list[str]:
    ours = (sections.get("binary") or {}).get("rows", [])
    theirs = (sections.get("brevitas") or {}).get("rows", [])
    budget = (sections.get("brevitas") or {}).get("budget")
    lines = ["## Binary and ternary weights on fmnist-cnn: torchslim vs Brevitas", ""]
    lines.append(
        "First and last layers 8-bit in every row. Brevitas keeps float weights in its state_dict: its "
        "bytes column is the ideal packed size (1 or 2 bits a weight, fp32 scales and biases, computed, "
        f"not written), the file column its state_dict as safetensors. Training budget of both sides: {budget} "
        f"(torchslim's recipe default: {binary_defaults()})."
    )
    lines.append("")
    headers = ["kind", "method", "accuracy", "bytes", "x smaller", "file bytes", "seconds", "verdict"]
    table = []
    for kind in BINARY_KINDS:
        peers_of_kind = [r for r in theirs if r.get("kind") == ("ternary" if kind == "ttq" else kind)]
        best = max(peers_of_kind, key=lambda r: r["accuracy"], default=None)
        for r in [find(ours, kind=kind), *(peers_of_kind if kind != "ttq" else [])]:
            if r is None:
                continue
            cell = "peer"
            if r["method"].startswith("torchslim"):
                ok, why = verdict(r, best)
                cell = f"{ok_text(ok)}: {why}"
            file_bytes = r.get("state_file_bytes") or (r.get("reported") or {}).get("file_bytes")
            table.append(
                [
                    kind,
                    r["method"],
                    fmt_acc(r),
                    fmt_bytes(r["bytes"]),
                    r["x_smaller"],
                    fmt_bytes(file_bytes),
                    r.get("seconds"),
                    cell,
                ]
            )
    return lines + (md_table(headers, table) if table else ["(no binary rows yet)"]) + ["", *BINARY_NOTES, ""]


BINARY_NOTES = (
    "Why rows differ. Same trained fmnist-cnn, same loop (torchslim.train.train), optimizer, learning "
    "rate, schedule, epochs, seed and data order on both sides; one seed, so a gap of a few tenths of a "
    "point is 10-40 of the 10,000 test images. The methods differ: torchslim binary is BinaryConnect/BNN "
    "(sign, straight-through gradient clipped at |w| <= 1, latent weights clipped) with the XNOR-Net scale "
    "a = mean|w| per output channel recomputed from the weights; ternary is TWN (threshold 0.7 mean|w|, "
    "a = mean of the kept |w|). Brevitas per_channel learns its per-channel scale as a parameter "
    "(initialised from mean|w|) and rounds w/scale to {-1, +1} or {-1, 0, +1}; its shipped quantizers use "
    "a constant per-tensor scale of 0.1, meant for training from scratch. On disk, torchslim's bytes are "
    "its real artifact (model.safetensors + torchslim.json: header and JSON plan included); Brevitas has "
    "no packed format, so its bytes are the ideal payload with no container at all.",
)


def deep_compression_lines(sections: dict[str, Any]) -> list[str]:
    rows = (sections.get("deep_compression") or {}).get("rows", [])
    if not rows:
        return ["## Deep Compression on lenet-300-100", "", "(not run: the torchslim side is missing)", ""]
    r = rows[0]
    rep = r.get("reported", {})
    headers = ["recipe", "accuracy", "artifact bytes (files)", "x smaller", "fresh-process reload", "ONNX parity"]
    onnx = rep.get("onnx") or {}
    table = [
        [
            " -> ".join(rep.get("recipe") or ["deep-compression"])
            + f" (k-means bits {sorted({layer.get('weight_bits') for layer in rep.get('kmeans_layers') or []})})",
            fmt_acc(r),
            f"{fmt_bytes(r['bytes'])} {rep.get('artifact_files', '')}",
            r["x_smaller"],
            rep.get("fresh_process_identical"),
            f"{onnx.get('parity_rtol_1e-3')} (max abs diff {onnx.get('max_abs_diff')})" if onnx else "-",
        ]
    ]
    lines = ["## Deep Compression on lenet-300-100 (recipe `deep-compression`)", "", *md_table(headers, table), ""]
    if rep.get("note"):
        lines += [f"Runtime: {rep['note']}.", ""]
    return lines


def torchslim_fact_lines(sections: dict[str, Any]) -> list[str]:
    """What part B's rows measured beyond accuracy and bytes (reload, ONNX, values per channel)."""
    lines = []
    for r in (sections.get("binary") or {}).get("rows", []):
        rep = r.get("reported", {})
        lines.append(
            f"- torchslim {r.get('kind')}: fresh-process reload identical {rep.get('reload_identical')}; "
            f"ONNX {rep.get('onnx')}; most distinct stored values in an output channel "
            f"{rep.get('levels_per_channel')}; STE training {(rep.get('config') or {}).get('train')}"
        )
    return ["## torchslim binary / ternary: further facts", "", *lines, ""] if lines else []


def baseline_lines(sections: dict[str, Any]) -> list[str]:
    models = (sections.get("baseline") or {}).get("models", {})
    table = [
        [n, f"{m['params']:,}", m["train"], f"{100 * m['accuracy']:.2f}", fmt_bytes(m["bytes"]), m["sha256"][:12]]
        for n, m in models.items()
    ]
    headers = ["model", "params", "training", "fp32 accuracy %", "fp32 safetensors bytes", "sha256"]
    return ["## fp32 baselines (the reference of every row)", "", *md_table(headers, table), ""]


def digest_lines(sections: dict[str, Any]) -> list[str]:
    """Every section names the baseline digest it started from; say when they differ."""
    seen: dict[str, set[str]] = {}
    for name, model in ((sections.get("baseline") or {}).get("models") or {}).items():
        seen.setdefault(name, set()).add(model["sha256"][:12])
    for section in sections.values():
        for name, ref in (section.get("baselines") or {}).items():
            seen.setdefault(name, set()).add(ref["sha256"][:12])
    bad = {n: sorted(s) for n, s in seen.items() if len(s) > 1}
    if bad:
        return [f"**Warning: sections started from different weights: {bad}**", ""]
    return [f"Every section started from the same weights: {', '.join(f'{n} {s.pop()}' for n, s in seen.items())}.", ""]


def to_markdown(results: dict[str, Any]) -> str:
    sections = results["sections"]
    lines = ["# Non-uniform, binary and ternary weights, Deep Compression (issue 18)", ""]
    lines += [env_line(results["env"]), "", f"All sections in one process: `{results['command']}`.", ""]
    lines += [
        "Sections (run as separate processes on the same cached weights; a section's later part replaces",
        "its earlier rows):",
        "",
    ]
    for name, section in sections.items():
        run = section.get("run", {})
        commands = run.get("commands") or [run.get("command", "(command not recorded)")]
        lines.append(f"- `{name}`: {run.get('dates') or run.get('date')}; {'; '.join(f'`{c}`' for c in commands)}")
    lines.append("")
    lines += [
        "Seconds columns are wall time on a 2-core machine shared with other jobs (load average 12-25 "
        "during these runs): for orientation only, not a speed measurement. The first coremltools "
        "palettization in a process took 150-200 s, later ones 1-2 s.",
        "",
    ]
    lines += baseline_lines(sections) + digest_lines(sections)
    checks = results.get("checks", [])
    if results.get("quick"):
        lines += [
            "**--quick: 2,048 training images, under-trained baselines and short budgets: a smoke run of "
            "every section. The goals below are judged on the full run (benchmarks/results/nonuniform.md).**",
            "",
        ]
    lines += [
        "## Goals",
        "",
        *md_table(["claim", "measured", "met"], [[c["claim"], c["measured"], ok_text(c["ok"])] for c in checks]),
        "",
    ]
    lines += kmeans_lines(sections) + binary_lines(sections)
    lines += deep_compression_lines(sections) + torchslim_fact_lines(sections)
    errors = {n: s["error"] for n, s in sections.items() if "error" in s}
    if errors:
        lines += ["## Sections that failed", "", *[f"- {n}: {e}" for n, e in errors.items()], ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# main


def section_store(args: argparse.Namespace) -> Path:
    return args.cache / "sections" / ("quick" if args.quick else "full")


def store_section(args: argparse.Namespace, name: str, result: dict[str, Any]) -> None:
    from torchslim.io.atomic import write_json

    env = environment(threads=args.threads)
    result["run"] = {
        "date": env["date"],
        "commit": env["versions"]["torchslim_commit"],
        "load": env["load_average"],
        "command": " ".join(["python benchmarks/nonuniform.py", *sys.argv[1:]]),
    }
    part = "+".join(str(v) for v in (args.models, args.kinds, args.bits and f"{args.bits}bit") if v) or "all"
    if name == "brevitas" and args.brevitas_variants != BREVITAS_VARIANTS:
        part += "+" + args.brevitas_variants
    path = section_store(args) / f"{name}@{part}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, json.loads(json.dumps(result, default=str)))


def assemble(args: argparse.Namespace) -> dict[str, Any]:
    """The results of every section run so far (this process's and earlier ones), in section order."""
    store = section_store(args)
    sections = {}
    for name in SECTIONS:
        parts = sorted(store.glob(f"{name}@*.json"), key=lambda p: p.stat().st_mtime)
        if parts:
            sections[name] = merge_parts([json.loads(p.read_text()) for p in parts])
    command = "python benchmarks/nonuniform.py" + (" --quick" if args.quick else "")
    results = {"quick": args.quick, "env": environment(threads=args.threads), "command": command, "sections": sections}
    results["checks"] = goal_checks(sections)
    return results


def merge_parts(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One section from the runs of its parts (oldest first): rows of the same model, bits, kind and
    method from a later run replace earlier ones; other keys come from the latest run."""
    merged: dict[str, Any] = {}
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    for part in parts:
        for r in part.get("rows", []):
            rows[tuple(r.get(k) for k in ("model", "bits", "kind", "method"))] = r
        merged.update({k: v for k, v in part.items() if k not in ("rows", "models")})
        if "models" in part:
            merged.setdefault("models", {}).update(part["models"])
    if rows:
        merged["rows"] = list(rows.values())
    if len(parts) > 1:
        merged["run"] = {
            **merged.get("run", {}),
            "dates": [p.get("run", {}).get("date") for p in parts],
            "commands": [p.get("run", {}).get("command", "(command not recorded)") for p in parts],
        }
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,048 training images, short budgets")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {list(SECTIONS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "nonuniform")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    parser.add_argument("--ft-steps", type=int, default=100, help="fine-tuning steps of torchslim k-means and DKM")
    parser.add_argument("--ft-lr", type=float, default=1e-4, help="their learning rate (Adam, cosine)")
    parser.add_argument(
        "--models", default=None, help="models of coreml/dkm/kmeans (default both; dkm --quick: lenet-300-100)"
    )
    parser.add_argument(
        "--binary-epochs", type=int, default=None, help="STE epochs of torchslim and Brevitas (default: torchslim's)"
    )
    parser.add_argument("--bits", default=None, help="k-means bit widths of coreml/dkm/kmeans (default 2,3,4)")
    parser.add_argument("--kinds", default=None, help=f"kinds of binary/brevitas (default {BINARY_KINDS})")
    parser.add_argument("--brevitas-variants", default=BREVITAS_VARIANTS, help="per_channel and/or shipped")
    parser.add_argument("--report-only", action="store_true", help="rebuild the results files from stored sections")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    torch.set_num_threads(args.threads)
    if not args.report_only:
        bench = Bench(args)
        done = run_sections(args.only, SECTIONS, lambda fn: fn(bench), error=parser.error)
        for name, result in done.items():
            store_section(args, name, result)
    results = assemble(args)
    stem = "nonuniform_quick" if args.quick else "nonuniform"
    write_results(args.out, stem, results, to_markdown(results))
    log(f"wrote {args.out / stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
