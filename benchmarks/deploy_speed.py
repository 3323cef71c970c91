"""Deployment speed (issue 14): torchslim int8 and 50% channels + int8 next to every peer a user
would pick instead, on the same model, calibration data and machine, in the same timing rounds.

    python benchmarks/deploy_speed.py --quick    # a few minutes on 2 cores; fewer rounds, 64
                                                 # calibration samples, the rows that the full run
                                                 # adds: Torch-Pruning eager, OpenVINO fp32, torchao,
                                                 # torch.nn.utils.prune
    python benchmarks/deploy_speed.py            # more rounds and calibration samples
    python benchmarks/deploy_speed.py --only resnet18 --batches 1

Sections (``--only``):

* ``resnet56`` / ``resnet18``: random-weight ResNet-56 (CIFAR-style, 3 x 9 basic blocks, 16/32/64)
  and ResNet-18 (64-512) for 3x32x32 inputs, BatchNorm statistics randomised. Rows: PyTorch fp32
  eager (the baseline), onnxruntime fp32, onnxruntime ``quantize_static`` (QDQ, per-channel, int8,
  calibrated on the same batches as torchslim), torchslim int8 (``quantize`` with default settings,
  exported with ``torchslim.deploy.export_onnx``, run on onnxruntime; the same model on OpenVINO,
  its ONNX converted to IR, and on ExecuTorch with XNNPACK), torchslim 50% channels
  (``channel_pruning`` ratio 0.5, defaults otherwise) fp32 and + int8 (the three runtimes; the quick
  run leaves out ResNet-56's ExecuTorch one: lowering takes ~25 s a program), Torch-Pruning 50%
  (MagnitudePruner, same widths and parameter count) in eager, onnxruntime fp32 and + ``quantize_static``,
  torch.ao FX static int8 (x86), torchao ``quantize_`` int8 dynamic (Linear only), OpenVINO fp32 and
  NNCF post-training int8 on OpenVINO, ``torch.nn.utils.prune`` 50% unstructured. Speed-up over
  PyTorch fp32 eager at batch 1 and 32, 2 threads, rotating rounds (``_harness.rotating_latency``);
  output cosine and top-1 agreement with fp32; the graph onnxruntime runs (integer kernels,
  Quantize / Dequantize nodes, float Adds); a column saying where torchslim is behind a peer.
* ``minilm``: MiniLM-L6 sentence encoder at batch 32 x 128 tokens: torchslim int8 (default, on
  onnxruntime) next to onnxruntime ``quantize_dynamic`` (per-tensor, per-channel; and per-channel
  after onnxruntime's BERT optimizer, the route to its fused ``QAttention``: full run only), NNCF
  int8 weight compression on OpenVINO, torch.ao ``quantize_dynamic`` and torchao int8 dynamic; and,
  in the full run, torchslim's int8 weights only (``Quantize(activations=None)``) on OpenVINO, whose
  CPU plugin quantizes those layers' inputs at run time as it does NNCF's; mean cosine of sentence
  embeddings against fp32 over tweets.

Writes ``benchmarks/results/deploy_speed[_quick].json``, ``.md`` and ``deploy_speed[_quick].png``.
"""

from __future__ import annotations

import argparse
import functools
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

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))
sys.path.insert(0, str(ROOT))

import _deploy_models as dm  # noqa: E402
from _deploy_report import PUBLISHED, behind_column, markdown, plot_groups  # noqa: E402
from _harness import (  # noqa: E402
    bar_plot,
    log,
    new_results,
    ort_fn,
    ort_session,
    rotating_latency,
    run_sections,
    torch_fn,
    write_results,
)

BASELINE = "PyTorch fp32 eager"


class Variant:
    """One row: who made it (baseline / torchslim / peer), its group (fp32 / int8 / pruned), the
    runtime, ``bind(x)`` -> a zero-argument callable running it on batch `x`, and facts."""

    def __init__(self, who: str, group: str, runtime: str, bind: Callable[[torch.Tensor], Callable[[], Any]]):
        self.who, self.group, self.runtime, self.bind = who, group, runtime, bind
        self.facts: dict[str, Any] = {}


def first_output(out: Any) -> np.ndarray:
    if isinstance(out, torch.Tensor):
        return out.detach().numpy()
    if isinstance(out, list):
        return np.asarray(out[0])
    return np.asarray(out[0] if not isinstance(out, np.ndarray) else out)  # OpenVINO's OVDict


def onnx_variant(who: str, group: str, path: Path, threads: int) -> Variant:
    from torchslim.deploy import optimized_op_counts

    session = ort_session(path, threads)
    name = session.get_inputs()[0].name
    v = Variant(who, group, "onnxruntime", lambda x: ort_fn(session, {name: x.numpy()}))
    ops = optimized_op_counts(path)
    v.facts["bytes"] = path.stat().st_size
    v.facts["graph"] = {
        k: ops.get(k, 0)
        for k in ("QLinearConv", "Conv", "FusedConv", "QLinearAdd", "Add", "QuantizeLinear", "DequantizeLinear")
        if ops.get(k, 0)
    }
    return v


def torch_variant(who: str, group: str, model: torch.nn.Module) -> Variant:
    return Variant(who, group, "PyTorch eager", lambda x: torch_fn(model, x))


def build_variants(
    model: torch.nn.Module, calib: list[torch.Tensor], args: argparse.Namespace, *, slow_lowering: bool = False
) -> dict[str, Any]:
    # long: one guarded builder call per row of the table, in the table's order
    from quantization import ort_quantize_static
    from torchslim.deploy import export_onnx
    from torchslim.pruning import ChannelPruning
    from torchslim.quantization import Quantize

    tmp = Path(tempfile.mkdtemp(prefix="ts-bench-deploy-"))
    example = calib[0][:1]
    labelled = [(x, torch.zeros(len(x), dtype=torch.long)) for x in calib]
    feeds = [{"input": x.numpy()} for x in calib]
    threads = args.threads
    out: dict[str, Any] = {}

    def add(name: str, build: Callable[[], Variant], *, quick: bool = True, **facts: Any) -> None:
        if args.quick and not quick:
            return
        log(f"  building {name}")
        started = time.perf_counter()
        try:
            v = build()
            v.facts.update(facts, build_seconds=round(time.perf_counter() - started, 1))
            out[name] = v
        except Exception as exc:  # noqa: BLE001 - one broken tool chain must not hide the others
            out[name] = f"{type(exc).__name__}: {str(exc)[:300]}"
            log(f"  {name} failed: {out[name]}")

    def onnx(who: str, group: str, m: torch.nn.Module, file: str, static: bool = False) -> Variant:
        fp32 = tmp / file.replace(".onnx", "_fp32.onnx") if static else tmp / file
        export_onnx(m, fp32, example)
        if static:  # onnxruntime's default uint8 activations: it fuses every Conv, Add and pool then
            ort_quantize_static(fp32, tmp / file, feeds, activations="uint8")
        return onnx_variant(who, group, tmp / file, threads)

    built: dict[str, torch.nn.Module] = {}  # each torchslim model once, for both of its runtimes

    def compressed(configs: list[Any], file: str) -> torch.nn.Module:
        if file not in built:
            built[file] = dm.torchslim_recipe(model, configs, labelled)
        return built[file]

    def recipe(configs: list[Any], file: str, group: str) -> Variant:
        return onnx("torchslim", group, compressed(configs, file), file)

    def on_executorch(configs: list[Any], file: str, group: str) -> Variant:
        return executorch_variant(group, compressed(configs, file), tmp / file.replace(".onnx", ""), threads)

    def on_openvino(configs: list[Any], file: str, group: str) -> Variant:
        return torchslim_openvino_variant(
            group, compressed(configs, file), tmp / file.replace(".onnx", ".xml"), threads
        )

    tp = dm.torch_pruning_50(model, example)
    ts_pruned = dm.torchslim_recipe(model, [ChannelPruning(ratio=0.5)], labelled)
    dense, half = dm.params(model), dm.params(tp)
    add(BASELINE, lambda: torch_variant("baseline", "fp32", model), params=dense)
    add("onnxruntime fp32", lambda: onnx("peer", "fp32", model, "fp32.onnx"), params=dense)
    add("onnxruntime quantize_static", lambda: onnx("peer", "int8", model, "ort_q.onnx", static=True), params=dense)
    add("torchslim int8", lambda: recipe([Quantize()], "ts_int8.onnx", "int8"), params=dense)
    add("torchslim int8 (ExecuTorch)", lambda: on_executorch([Quantize()], "ts_int8.onnx", "int8"), params=dense)
    add("torchslim int8 (OpenVINO)", lambda: on_openvino([Quantize()], "ts_int8.onnx", "int8"), params=dense)
    add("torchslim 50% channels (fp32)", lambda: onnx("torchslim", "pruned", ts_pruned, "ts_50.onnx"), params=half)
    add(
        "torchslim 50% channels + int8",
        lambda: recipe([ChannelPruning(ratio=0.5), Quantize()], "ts_50_int8.onnx", "pruned"),
        params=dm.params(ts_pruned),
    )
    add(
        "torchslim 50% channels + int8 (OpenVINO)",
        lambda: on_openvino([ChannelPruning(ratio=0.5), Quantize()], "ts_50_int8.onnx", "pruned"),
        params=dm.params(ts_pruned),
    )
    add(
        "torchslim 50% channels + int8 (ExecuTorch)",
        lambda: on_executorch([ChannelPruning(ratio=0.5), Quantize()], "ts_50_int8.onnx", "pruned"),
        params=dm.params(ts_pruned),
        quick=not slow_lowering,
    )
    add("Torch-Pruning 50% (eager)", lambda: torch_variant("peer", "pruned", tp), params=half, quick=False)
    add("Torch-Pruning 50% (onnxruntime fp32)", lambda: onnx("peer", "pruned", tp, "tp.onnx"), params=half)
    add(
        "Torch-Pruning 50% + quantize_static",
        lambda: onnx("peer", "pruned", tp, "tp_q.onnx", static=True),
        params=half,
    )
    add(
        "torch.ao FX static int8 (x86)",
        lambda: torch_variant("peer", "int8", dm.ao_fx_int8(model, calib)),
        params=dense,
    )
    if not args.quick:
        from quantization import torchao_models

        for name, m in torchao_models(model).items():
            if not isinstance(m, str):
                add(name, lambda m=m: torch_variant("peer", "int8", m), params=dense)
    add(
        "OpenVINO fp32",
        lambda: openvino_variant("fp32", model, None, threads, tmp / "ov_fp32.xml"),
        params=dense,
        quick=False,
    )
    add(
        "NNCF int8 on OpenVINO",
        lambda: openvino_variant("int8", model, calib, threads, tmp / "ov_int8.xml"),
        params=dense,
    )
    add(
        "torch.nn.utils.prune 50% unstructured",
        lambda: torch_variant("peer", "pruned", dm.nn_utils_prune(model)),
        params=dense,
        quick=False,
    )
    widths = {"torchslim": dm.conv_widths(ts_pruned), "Torch-Pruning": dm.conv_widths(tp)}
    out["_pruned_check"] = {
        "same_conv_widths": widths["torchslim"] == widths["Torch-Pruning"],
        "params": {"torchslim": dm.params(ts_pruned), "Torch-Pruning": dm.params(tp), "dense": dm.params(model)},
        "macs": {"torchslim": dm.macs(ts_pruned, example), "Torch-Pruning": dm.macs(tp, example)},
    }
    return out


def executorch_variant(group: str, model: torch.nn.Module, directory: Path, threads: int) -> Variant:
    """torchslim's model on ExecuTorch (XNNPACK): a program per batch shape (static shapes), exported
    when the shape is first bound. XNNPACK's thread pool is sized once, before any program loads."""
    from torchslim.deploy.executorch import export_executorch, load_method, set_xnnpack_threads

    set_xnnpack_threads(threads)
    directory.mkdir(parents=True, exist_ok=True)
    methods: dict[tuple[int, ...], Any] = {}
    v = Variant("torchslim", group, "ExecuTorch", lambda x: lambda: None)

    def bind(x: torch.Tensor) -> Callable[[], Any]:
        shape = tuple(x.shape)
        if shape not in methods:
            path = directory / f"b{shape[0]}.pte"
            facts = export_executorch(model, path, x)
            v.facts["bytes"] = facts.bytes
            v.facts["graph"] = {"XNNPACK calls": facts.delegated_calls, **facts.portable_ops}
            methods[shape] = load_method(path)
        method, inputs = methods[shape], [x.contiguous()]
        return lambda: method.execute(inputs)

    v.bind = bind
    return v


def torchslim_openvino_variant(group: str, model: torch.nn.Module, xml: Path, threads: int) -> Variant:
    """torchslim's model on OpenVINO: its ONNX export converted to IR (``torchslim.deploy.export_openvino``),
    compiled once per batch shape (static shapes, as ``torchslim deploy`` times it)."""
    from torchslim.deploy import export_openvino
    from torchslim.deploy.openvino.session import compile_ir

    facts = export_openvino(model, xml, torch.zeros(1, 3, 32, 32))
    requests: dict[tuple[int, ...], Any] = {}

    def bind(x: torch.Tensor) -> Callable[[], Any]:
        shape = tuple(x.shape)
        if shape not in requests:
            requests[shape] = compile_ir(xml, threads=threads, shapes=[shape]).create_infer_request()
        request, array = requests[shape], x.numpy()
        return lambda: request.infer({0: array})

    v = Variant("torchslim", group, "OpenVINO", bind)
    v.facts["bytes"] = facts.bytes
    return v


def openvino_variant(
    group: str, model: torch.nn.Module, calib: list[torch.Tensor] | None, threads: int, xml: Path
) -> Variant:
    _, run = dm.openvino_model(model, calib, threads=threads, xml=xml)

    def bind(x: torch.Tensor) -> Callable[[], Any]:
        array = x.numpy()
        return lambda: run(array)

    v = Variant("peer", group, "OpenVINO", bind)
    v.facts["bytes"] = xml.stat().st_size + xml.with_suffix(".bin").stat().st_size
    return v


def fidelity(variants: dict[str, Variant], x: torch.Tensor) -> dict[str, dict[str, float]]:
    """Output cosine and top-1 agreement of each variant with PyTorch fp32 eager on batch `x`."""
    ref = first_output(variants[BASELINE].bind(x)())
    out = {}
    for name, v in variants.items():
        y = first_output(v.bind(x)())
        cos = (ref * y).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(y, axis=1) + 1e-12)
        out[name] = {
            "cosine": round(float(cos.mean()), 5),
            "top1_agreement": round(float((ref.argmax(1) == y.argmax(1)).mean()), 4),
        }
    return out


def section_cnn(name: str, args: argparse.Namespace) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(1)
    n_cal = 64 if args.quick else 512
    data = torch.randn(n_cal + 256, 3, 32, 32, generator=gen)
    calib = list(data[:n_cal].split(32))
    test = data[n_cal:]
    model = dm.MODELS[name](data[:n_cal])
    # XNNPACK's partitioner took ~25 s per ResNet-56 program here (ResNet-18: a few seconds): the quick
    # run (< 10 minutes) lowers only its dense int8 program
    built = build_variants(model, calib, args, slow_lowering=name == "ResNet-56")
    pruned_check = built.pop("_pruned_check")
    variants = {k: v for k, v in built.items() if isinstance(v, Variant)}
    rows: dict[str, dict[str, Any]] = {
        k: {"who": v.who, "group": v.group, "runtime": v.runtime, **v.facts} for k, v in variants.items()
    }
    rows.update({k: {"error": v} for k, v in built.items() if isinstance(v, str)})
    # on the largest timed batch: an ExecuTorch program has static shapes, so this shares its export
    for k, fid in fidelity(variants, test[: max(args.batches)]).items():
        rows[k].update(fid)
    for batch in args.batches:
        x = test[:batch]
        fns = {k: v.bind(x) for k, v in variants.items()}
        rounds = args.rounds * (3 if batch == 1 else 1)
        log(f"  timing {len(fns)} variants at batch {batch}, {rounds} rounds")
        for k, lat in rotating_latency(fns, BASELINE, rounds=rounds, threads=args.threads).items():
            rows[k][f"b{batch}"] = {"ms": lat["ms"], "speedup": lat["speedup"]}
    for k, v in variants.items():
        rows[k].update(v.facts)  # facts known only once bound (an ExecuTorch program per batch)
    behind_column(rows, args.batches)
    return {
        "model": {"params": dm.params(model), "macs": dm.macs(model, test), "input": [3, 32, 32]},
        "calibration_samples": n_cal,
        "rounds": {f"b{b}": args.rounds * (3 if b == 1 else 1) for b in args.batches},
        "pruned_check": pruned_check,
        "rows": rows,
    }


def section_minilm(args: argparse.Namespace) -> dict[str, Any]:
    # long: the MiniLM rows (build, fidelity, timing) side by side
    from quantization import _embed, _embed_onnx, _embed_with, ao_dynamic, ort_quantize_dynamic, torchao_models
    from torchslim.core import Context, DataSplits
    from torchslim.data import load_splits
    from torchslim.deploy import export_onnx, export_openvino
    from torchslim.models import build_model
    from torchslim.quantization import Quantize, quantize_handler

    n_texts = 64 if args.quick else 512
    model = build_model("minilm-l6").eval()
    splits = load_splits("tweets", batch_size=32, eval_samples=n_texts, seed=0)
    texts: list[str] = [t for batch, _ in splits.test for t in batch][:n_texts]
    tmp = Path(tempfile.mkdtemp(prefix="ts-bench-deploy-minilm-"))
    example = model.tokenize(texts[:2], padding="longest")
    export_onnx(model, tmp / "fp32.onnx", example)
    if args.quick:  # 64 calibration texts instead of the default 512 (the time is in calibration)
        splits = DataSplits(calibration=[b for _, b in zip(range(2), splits.calibration, strict=False)])
    started = time.perf_counter()
    ts = quantize_handler(model, Quantize(), targets=None, context=Context(data=splits, seed=0, quiet=True)).model
    build_seconds = round(time.perf_counter() - started, 1)
    export_onnx(ts, tmp / "ts_int8.onnx", example)
    ort_quantize_dynamic(tmp / "fp32.onnx", tmp / "ort_dyn.onnx")
    ort_quantize_dynamic(tmp / "fp32.onnx", tmp / "ort_dyn_pc.onnx", per_channel=True)
    if not args.quick:  # slower than plain quantize_dynamic here (fused SkipLayerNormalization is)
        dm.ort_bert_fused_dynamic(tmp / "fp32.onnx", tmp / "ort_bert_dyn_pc.onnx")
    nncf = dm.nncf_weights_openvino(tmp / "fp32.onnx", threads=args.threads)
    # name -> (who, input feeds -> first output, precision of the float operations)
    openvino_runs = {"NNCF int8 weight compression (OpenVINO)": ("peer", *nncf)}
    if not args.quick:  # int8 weights only: OpenVINO's CPU plugin quantizes such layers' inputs itself
        weights_only = quantize_handler(
            model, Quantize(activations=None), targets=None, context=Context(data=splits, seed=0, quiet=True)
        ).model
        export_openvino(weights_only, tmp / "ts_weights.xml", example)
        ts_ov = _openvino_runner(tmp / "ts_weights.xml", args.threads)
        openvino_runs["torchslim int8 weights, activations=None (OpenVINO)"] = ("torchslim", *ts_ov)
    ao = ao_dynamic(model)
    torch_models: dict[str, tuple[str, torch.nn.Module]] = {
        BASELINE: ("baseline", model),
        "torch.ao quantize_dynamic": ("peer", ao),
    }
    for name, m in ({} if args.quick else torchao_models(model)).items():  # 2-3x slower than fp32 here
        if not isinstance(m, str) and "dynamic" in name:
            torch_models[name.replace(" (Linear only)", "")] = ("peer", m)
    onnx_files = {
        "onnxruntime fp32": ("peer", "fp32.onnx"),
        "onnxruntime quantize_dynamic (per-tensor)": ("peer", "ort_dyn.onnx"),
        "onnxruntime quantize_dynamic (per-channel)": ("peer", "ort_dyn_pc.onnx"),
        "onnxruntime BERT optimizer + quantize_dynamic (per-channel)": ("peer", "ort_bert_dyn_pc.onnx"),
        "torchslim int8 (onnxruntime)": ("torchslim", "ts_int8.onnx"),
    }
    if args.quick:
        del onnx_files["onnxruntime BERT optimizer + quantize_dynamic (per-channel)"]
    ref = _embed(model, texts)
    rows: dict[str, dict[str, Any]] = {}
    for name, (who, m) in torch_models.items():
        rows[name] = {"who": who, "group": "int8", "runtime": "PyTorch eager", "emb": _embed(m, texts)}
    for name, (who, f) in onnx_files.items():
        emb = _embed_onnx(tmp / f, model, texts, args.threads)
        rows[name] = {"who": who, "group": "int8", "runtime": "onnxruntime", "emb": emb}
        rows[name]["bytes"] = (tmp / f).stat().st_size
    for name, (who, run, precision) in openvino_runs.items():
        emb = _embed_with(run, model, texts)
        rows[name] = {"who": who, "group": "int8", "runtime": "OpenVINO", "precision": precision, "emb": emb}
    for row in rows.values():
        row["mean_cosine"] = round(float(torch.nn.functional.cosine_similarity(ref, row.pop("emb")).mean()), 5)
    enc = model.tokenize((texts * 32)[:32], padding="max_length")
    feeds = {k: v.numpy() for k, v in enc.items()}
    fns: dict[str, Callable[[], Any]] = {k: torch_fn(m, enc) for k, (_, m) in torch_models.items()}
    for name, (_, f) in onnx_files.items():
        session = ort_session(tmp / f, args.threads)
        fns[name] = ort_fn(session, {i.name: feeds[i.name] for i in session.get_inputs()})
    for name, (_, run, _) in openvino_runs.items():
        fns[name] = functools.partial(run, feeds)
    rounds = max(8, args.rounds // 2)  # 4 quick rounds scattered 2.19x-2.65x over three runs
    log(f"  timing {len(fns)} variants at batch 32 x 128 tokens, {rounds} rounds")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k, lat in rotating_latency(fns, BASELINE, rounds=rounds, threads=args.threads).items():
            rows[k]["b32x128"] = {"ms": lat["ms"], "speedup": lat["speedup"]}
    behind_column(rows, ["32x128"])
    rows["torchslim int8 (onnxruntime)"]["build_seconds"] = build_seconds
    return {"texts": len(texts), "rounds": rounds, "rows": rows}


def _openvino_runner(xml: Path, threads: int) -> tuple[Callable[[dict[str, Any]], Any], str]:
    """torchslim's OpenVINO IR compiled as its backend compiles it (f32 float operations, for parity)
    for `threads` threads, dynamic shapes: input feeds -> first output, and that precision."""
    from torchslim.deploy.openvino import compile_ir

    return dm.openvino_runner(compile_ir(xml, threads=threads))


SECTIONS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "resnet56": lambda args: section_cnn("ResNet-56", args),
    "resnet18": lambda args: section_cnn("ResNet-18", args),
    "minilm": section_minilm,
}


def render(out: Path, stem: str) -> int:
    """Rewrite ``out/<stem>.md`` from its JSON, with the 'behind' notes derived again from the measured rows."""
    import json

    from _deploy_report import section_batches

    results = json.loads((out / f"{stem}.json").read_text())
    for key, section in results["sections"].items():
        if "rows" in section:
            behind_column(section["rows"], ["32x128"] if key == "minilm" else section_batches(section))
    write_results(out, stem, results, markdown(results))
    log(f"rewrote {out / (stem + '.md')} from its JSON")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer rounds, 64 calibration samples, no Torch-Pruning eager / OpenVINO fp32 / torchao / "
        "nn.utils.prune rows (torchao not on MiniLM either)",
    )
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {list(SECTIONS)}")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", default="1,32", help="CNN batch sizes (comma-separated)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds at batch 32 (x3 at batch 1); 6 quick, 24 full")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    parser.add_argument(
        "--render",
        action="store_true",
        help="rewrite the markdown from the JSON (the 'behind' notes rederived); time nothing",
    )
    args = parser.parse_args(argv)
    stem = "deploy_speed_quick" if args.quick else "deploy_speed"
    if args.render:
        return render(args.out, stem)
    args.rounds = args.rounds or (6 if args.quick else 24)
    args.batches = [int(b) for b in args.batches.split(",") if b.strip()]
    torch.set_num_threads(args.threads)
    import torchslim.pruning  # noqa: F401 - registers the techniques
    import torchslim.quantization  # noqa: F401

    results = new_results(quick=args.quick, threads=args.threads, published=PUBLISHED)
    results["sections"] = run_sections(args.only, SECTIONS, lambda fn: fn(args), error=parser.error)
    plot = bar_plot(
        args.out / f"{stem}.png",
        "Speed-up over PyTorch fp32 eager (higher is faster)",
        plot_groups(results),
        xlabel="speed-up over PyTorch fp32 eager",
    )
    results["plot"] = plot.name if plot else None
    write_results(args.out, stem, results, markdown(results))
    log(f"wrote {args.out / (stem + '.json')}, .md{' and .png' if plot else ''}")
    return 0 if all("error" not in s for s in results["sections"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
