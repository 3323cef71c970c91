"""Where int8 latency goes on onnxruntime: the measurements behind two export decisions.

    python benchmarks/int8_breakdown.py            # both sections, ~3 minutes on 2 cores
    python benchmarks/int8_breakdown.py --only fmnist
    python benchmarks/int8_breakdown.py --only profile --rounds 40   # per-operator profiles, ~2 minutes

Sections:

* ``fmnist``: fmnist-cnn (the trained model ``benchmarks/quantization.py`` caches) split at its first
  max-pool. Times, in rounds of onnxruntime sessions alone at batch 64 and 1 / 2 threads: the whole
  model in fp32, torchslim int8 (default: the 1-channel conv1 float), torchslim int8 with
  ``quantize_single_channel_convs=True`` (conv1 int8, exported as four shifted channels), the first
  stage (conv1, relu, pool) in fp32 alone, and the rest (conv2 .. classifier) alone in int8 and fp32.
  From these: the first stage's share of the fp32 model, the int8 speed-up onnxruntime gives the rest,
  and the speed-up the rest would need for the whole int8 model to reach 0.5x of fp32.
* ``profile`` (not in the default run): fmnist-resnet (batch 64) and a ResNet-56 shape (batch 32),
  random weights with BatchNorm statistics randomised: onnxruntime fp32, onnxruntime
  ``quantize_static`` and torchslim int8, each with onnxruntime's per-operator profile, its
  Quantize / Dequantize count after onnxruntime's optimizations, and latency ratios in rotating
  rounds; writes ``benchmarks/results/int8_profile.json`` and ``.md``.
* ``peers`` (not in the default run): torchslim int8 next to onnxruntime ``quantize_static`` with
  uint8 activations on the ResNet-56 / ResNet-18 shapes of ``_deploy_models.py``, batch 1 and 32;
  writes ``benchmarks/results/int8_profile_peers.json`` and ``.md``.
* ``minilm``: MiniLM-L6 exported with Hugging Face eager attention (torchslim's default) and with SDPA
  (``export_onnx(..., eager_attention=False)``), fp32 and through onnxruntime's ``quantize_dynamic``,
  timed at batch 32 x 128 tokens, onnxruntime sessions alone.

Writes ``benchmarks/results/int8_breakdown.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))
sys.path.insert(0, str(ROOT))

from _harness import log, run_sections, write_results  # noqa: E402
from quantization import ort_fn, ort_quantize_dynamic, ort_session, rotating_latency, trained_fmnist_cnn  # noqa: E402
from torchslim.core import Context  # noqa: E402
from torchslim.quantization import Quantize, WeightQuant, quantize_handler  # noqa: E402


def _ort_rounds(files: dict[str, Path], feeds_for: Any, *, threads: int, rounds: int) -> dict[str, dict[str, float]]:
    fns = {}
    for name, path in files.items():
        session = ort_session(path, threads)
        fns[name] = ort_fn(session, feeds_for(session))
    return rotating_latency(fns, next(iter(files)), rounds=rounds, threads=threads)


def section_fmnist(args: argparse.Namespace) -> dict[str, Any]:
    from torchslim.data import load_splits
    from torchslim.deploy import export_onnx

    splits = load_splits("fashion-mnist", batch_size=128, seed=0)
    model = trained_fmnist_cnn(args, splits)  # cached by benchmarks/quantization.py (same --quick)
    ctx = Context(data=splits, seed=0, quiet=True)
    default = quantize_handler(
        model, Quantize(weights=WeightQuant(bits=8), calibration_samples=512), targets=None, context=ctx
    ).model
    all_int8 = quantize_handler(
        model,
        Quantize(weights=WeightQuant(bits=8), calibration_samples=512, quantize_single_channel_convs=True),
        targets=None,
        context=ctx,
    ).model
    f = model.features
    stage1 = nn.Sequential(f.conv1, f.relu1, f.pool1).eval()
    qf = default.features
    rest_int8 = nn.Sequential(qf.conv2, qf.relu2, qf.pool2, default.flatten, default.fc, default.classifier).eval()
    rest_fp32 = nn.Sequential(f.conv2, f.relu2, f.pool2, model.flatten, model.fc, model.classifier).eval()
    tmp = Path(tempfile.mkdtemp(prefix="ts-bench-breakdown-"))
    x = next(iter(splits.test))[0][:64]
    with torch.no_grad():
        h = stage1(x)
    files = {
        "fp32 model": (model, x),
        "torchslim int8 (conv1 float, default)": (default, x),
        "torchslim int8 (conv1 int8, quantize_single_channel_convs)": (all_int8, x),
        "stage 1 alone, fp32 (conv1, relu, pool)": (stage1, x),
        "rest alone, int8 (conv2 .. classifier)": (rest_int8, h),
        "rest alone, fp32": (rest_fp32, h),
    }
    paths, inputs = {}, {}
    for i, (name, (m, inp)) in enumerate(files.items()):
        paths[name] = tmp / f"m{i}.onnx"
        export_onnx(m, paths[name], inp[:1])
        inputs[name] = inp.numpy()
    out: dict[str, Any] = {"batch": 64, "threads": {}}
    for threads in (1, 2):
        # one loop: every session times its own input, the ratio is against the fp32 model
        sessions = {name: ort_session(path, threads) for name, path in paths.items()}
        fns = {name: ort_fn(s, {s.get_inputs()[0].name: inputs[name]}) for name, s in sessions.items()}
        lat = rotating_latency(fns, "fp32 model", rounds=args.rounds * 4, threads=threads)
        # each part timed alone pays its own session overhead, so the two fp32 parts add up to more
        # than the whole; their shares are normalised to sum to 1 (the kinder reading for 0.5x)
        stage1_ms, rest_ms = lat["stage 1 alone, fp32 (conv1, relu, pool)"]["ms"], lat["rest alone, fp32"]["ms"]
        stage1_share = round(stage1_ms / (stage1_ms + rest_ms), 3)
        rest_speedup = rest_ms / lat["rest alone, int8 (conv2 .. classifier)"]["ms"]
        needed = (1 - stage1_share) / max(0.5 - stage1_share, 1e-9)
        out["threads"][str(threads)] = {
            "latency": lat,
            "stage1_share_of_fp32": stage1_share,
            "rest_int8_speedup": round(rest_speedup, 2),
            "rest_speedup_needed_for_0.5x": round(needed, 2),
        }
        log(
            f"  {threads} thread(s): int8 default {lat['torchslim int8 (conv1 float, default)']['ratio']:.3f}x, "
            f"stage 1 {stage1_share:.3f} of fp32, rest int8 {rest_speedup:.2f}x faster, 0.5x needs {needed:.2f}x"
        )
    return out


def section_minilm(args: argparse.Namespace) -> dict[str, Any]:
    from torchslim.deploy import export_onnx
    from torchslim.models import build_model

    model = build_model("minilm-l6")
    pair = ["A man is eating food.", "A man is eating a piece of bread."]
    example = model.tokenize(pair, padding="longest")
    tmp = Path(tempfile.mkdtemp(prefix="ts-bench-breakdown-"))
    export_onnx(model, tmp / "eager.onnx", example)
    export_onnx(model, tmp / "sdpa.onnx", example, eager_attention=False)
    ort_quantize_dynamic(tmp / "eager.onnx", tmp / "eager_int8.onnx", per_channel=True)
    ort_quantize_dynamic(tmp / "sdpa.onnx", tmp / "sdpa_int8.onnx", per_channel=True)
    enc = model.tokenize(["a tweet about the weather"] * 32, padding="max_length")
    feeds = {k: v.numpy() for k, v in enc.items()}
    files = {
        "fp32, SDPA export": tmp / "sdpa.onnx",
        "fp32, eager export": tmp / "eager.onnx",
        "quantize_dynamic int8, SDPA export": tmp / "sdpa_int8.onnx",
        "quantize_dynamic int8, eager export": tmp / "eager_int8.onnx",
    }
    lat = _ort_rounds(
        files,
        lambda s: {i.name: feeds[i.name] for i in s.get_inputs()},
        threads=args.threads,
        rounds=max(3, args.rounds // 4),
    )
    log("  " + ", ".join(f"{k} {v['ratio']:.3f}x" for k, v in lat.items()))
    return {"batch": 32, "sequence": 128, "threads": args.threads, "latency": lat}


# ------------------------------------------------------------------------------------------------
# per-operator profiles (onnxruntime's profiler): fmnist-resnet and a ResNet-56 shape


class ResNet56(nn.Module):
    """ResNet-56 for 3x32x32 inputs (He et al. 2016, 6n+2 with n=9, widths 16/32/64), built from
    torchslim's BasicBlock (1x1 conv + BN shortcuts where the shape changes)."""

    def __init__(self, num_classes: int = 10, blocks: int = 9) -> None:
        from torchslim.models.resnet import BasicBlock

        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        layers: list[nn.Module] = []
        in_ch = 16
        for width, stride in ((16, 1), (32, 2), (64, 2)):
            for j in range(blocks):
                layers.append(BasicBlock(in_ch, width, stride if j == 0 else 1))
                in_ch = width
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.classifier(self.flatten(self.pool(self.layers(self.stem(x)))))
        return out


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BatchNorm statistics and affine parameters (a random-weight model that is not degenerate)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
    return model.eval()


def ort_static_uint8(float_path: Path, out: Path, feeds: list[dict[str, Any]]) -> None:
    """onnxruntime's ``quantize_static`` (QDQ, per-channel int8 weights) with **uint8** activations:
    on x86 its int8-activation form keeps half of a ResNet's convolutions and every Add in float
    (measured: 30 float Conv, 27 float Add on the ResNet-56 shape), the uint8 form fuses them all."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self) -> dict[str, Any] | None:
            return next(self._it, None)

    pre = out.with_name(out.stem + "_pre.onnx")
    quant_pre_process(str(float_path), str(pre))
    quantize_static(
        str(pre),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )


def _profile_model(
    args: argparse.Namespace, name: str, model: nn.Module, calib: torch.Tensor, batch: torch.Tensor
) -> dict[str, Any]:
    """fp32, onnxruntime quantize_static and torchslim int8 of `model`: latency ratios (rotating
    rounds) and per-operator profiles, onnxruntime sessions alone."""
    from torchslim.core import DataSplits
    from torchslim.deploy import check_parity, export_onnx, optimized_op_counts
    from torchslim.deploy.onnxruntime.profile import operator_profile

    loader = [
        (calib[i : i + 64], torch.zeros(len(calib[i : i + 64]), dtype=torch.long)) for i in range(0, len(calib), 64)
    ]
    ctx = Context(data=DataSplits(train=loader, calibration=loader), seed=0, quiet=True)
    step = quantize_handler(
        model, Quantize(weights=WeightQuant(bits=8), calibration_samples=len(calib)), targets=None, context=ctx
    )
    tmp = Path(tempfile.mkdtemp(prefix=f"ts-bench-profile-{name}-"))
    export_onnx(model, tmp / "fp32.onnx", batch[:1])
    ts_export = export_onnx(step.model, tmp / "ts_int8.onnx", batch[:1])
    ort_static_uint8(tmp / "fp32.onnx", tmp / "ort_static.onnx", [{"input": b[0].numpy()} for b in loader])
    files = {
        "onnxruntime fp32": tmp / "fp32.onnx",
        "onnxruntime quantize_static (QDQ, per-channel, uint8 activations)": tmp / "ort_static.onnx",
        "torchslim int8": tmp / "ts_int8.onnx",
    }
    feeds = {"input": batch.numpy()}
    parity = check_parity(step.model, tmp / "ts_int8.onnx", batch[:16])
    out: dict[str, Any] = {
        "batch": int(batch.shape[0]),
        "threads": args.threads,
        "parity_max_steps": parity.max_diff_in_steps,
        "parity_ok": bool(parity.ok),
        "inserted_qdq": ts_export.inserted_qdq,
        "variants": {},
    }
    for variant, path in files.items():
        counts = optimized_op_counts(path)
        prof = operator_profile(path, feeds, threads=args.threads, runs=max(5, args.rounds // 3))
        out["variants"][variant] = {
            "quantize_linear": counts.get("QuantizeLinear", 0),
            "dequantize_linear": counts.get("DequantizeLinear", 0),
            "profile": prof.to_dict(),
        }
    lat = _ort_rounds(files, lambda s: feeds, threads=args.threads, rounds=args.rounds)
    for variant, row in lat.items():
        out["variants"][variant]["latency"] = row
    log(f"  {name}: " + ", ".join(f"{k} {v['ratio']:.3f}x" for k, v in lat.items()))
    return out


def section_profile(args: argparse.Namespace) -> dict[str, Any]:
    from torchslim.data import load_splits
    from torchslim.models import build_model

    torch.manual_seed(0)
    splits = load_splits("fashion-mnist", batch_size=128, seed=0)
    calib = torch.cat([b[0] for b in splits.calibration])[:512]
    test = torch.cat([b[0] for b in splits.test])[:64]
    fmnist = randomize_batchnorm(build_model("fmnist-resnet", seed=0))
    gen = torch.Generator().manual_seed(1)
    r56 = randomize_batchnorm(ResNet56())
    cifar_like = torch.randn(512 + 32, 3, 32, 32, generator=gen)
    return {
        "fmnist-resnet": _profile_model(args, "fmnist-resnet", fmnist, calib, test),
        "resnet56": _profile_model(args, "resnet56", r56, cifar_like[:512], cifar_like[512:]),
    }


def section_peers(args: argparse.Namespace) -> dict[str, Any]:
    """torchslim int8 next to onnxruntime quantize_static (uint8 activations) on the ResNet-56 and
    ResNet-18 shapes of benchmarks/_deploy_models.py: latency ratio to onnxruntime fp32 at batch 1
    and 32 (rotating rounds, onnxruntime sessions alone) and the graph onnxruntime runs."""
    import _deploy_models as dm
    from torchslim.core import DataSplits
    from torchslim.deploy import export_onnx, optimized_op_counts

    out: dict[str, Any] = {}
    for name, build in dm.MODELS.items():
        gen = torch.Generator().manual_seed(1)
        data = torch.randn(512 + 32, 3, 32, 32, generator=gen)
        model = build(data[:512]).eval()
        loader = [(data[i : i + 64], torch.zeros(64, dtype=torch.long)) for i in range(0, 512, 64)]
        ctx = Context(data=DataSplits(train=loader, calibration=loader), seed=0, quiet=True)
        q = quantize_handler(
            model, Quantize(weights=WeightQuant(bits=8), calibration_samples=512), targets=None, context=ctx
        ).model
        tmp = Path(tempfile.mkdtemp(prefix="ts-bench-peers-"))
        export_onnx(model, tmp / "fp32.onnx", data[:1])
        export_onnx(q, tmp / "ts.onnx", data[:1])
        ort_static_uint8(tmp / "fp32.onnx", tmp / "ort.onnx", [{"input": b[0].numpy()} for b in loader])
        files = {"onnxruntime fp32": tmp / "fp32.onnx", PEER: tmp / "ort.onnx", "torchslim int8": tmp / "ts.onnx"}
        row: dict[str, Any] = {"graph": {}}
        for variant in (PEER, "torchslim int8"):
            counts = optimized_op_counts(files[variant])
            row["graph"][variant] = {op: counts.get(op, 0) for op in GRAPH_OPS}
        for batch in (1, 32):
            feeds = {"input": data[512 : 512 + batch].numpy()}
            row[f"batch {batch}"] = _ort_rounds(files, lambda s, f=feeds: f, threads=args.threads, rounds=args.rounds)
            log(
                f"  {name} batch {batch}: "
                + ", ".join(f"{k} {v['ratio']:.3f}x" for k, v in row[f"batch {batch}"].items())
            )
        out[name] = row
    return out


PEER = "onnxruntime quantize_static (QDQ, per-channel, uint8 activations)"
GRAPH_OPS = (
    "QLinearConv",
    "QLinearAdd",
    "QLinearGlobalAveragePool",
    "QuantizeLinear",
    "DequantizeLinear",
    "Add",
    "Conv",
)
SECTIONS = {"fmnist": section_fmnist, "minilm": section_minilm, "profile": section_profile, "peers": section_peers}


def peers_markdown(results: dict[str, Any]) -> str:
    """The table of the ``peers`` section."""
    lines = [
        "# int8 on onnxruntime: torchslim next to quantize_static",
        "",
        f"Latency ratio to onnxruntime fp32 (rotating rounds, medians, 2 threads, onnxruntime sessions alone) "
        f"and the operators onnxruntime runs; {results['env']['date']}, {results['seconds']:.0f} s. "
        "Random weights, BatchNorm statistics randomised.",
        "",
        "| model, batch | " + " | ".join(("onnxruntime fp32", PEER, "torchslim int8")) + " | torchslim / peer |",
        "|---|---|---|---|---|",
    ]
    for name, row in results["sections"].get("peers", {}).items():
        if not isinstance(row, dict) or "graph" not in row:
            continue
        for key in ("batch 1", "batch 32"):
            lat = row[key]
            cells = [f"{lat[v]['ms']} ms ({lat[v]['ratio']:.3f}x)" for v in lat]
            rel = lat["torchslim int8"]["ratio"] / lat[PEER]["ratio"]
            lines.append(f"| {name}, {key} | " + " | ".join(cells) + f" | {rel:.3f}x |")
    lines += ["", "| model | graph | " + " | ".join(GRAPH_OPS) + " |", "|---|---" + "|---" * len(GRAPH_OPS) + "|"]
    for name, row in results["sections"].get("peers", {}).items():
        for variant, counts in (row.get("graph", {}) if isinstance(row, dict) else {}).items():
            lines.append(f"| {name} | {variant} | " + " | ".join(str(counts[op]) for op in GRAPH_OPS) + " |")
    return "\n".join(lines + [""])


def profile_markdown(results: dict[str, Any]) -> str:
    """The per-operator profile tables of the ``profile`` section."""
    lines = [
        "# int8 on onnxruntime: per-operator profile",
        "",
        f"onnxruntime's profiler (kernel time per operator type of the optimized graph, ms per run) and "
        f"latency in rotating rounds (medians, ratio to onnxruntime fp32 in the same rounds); "
        f"{results['env']['date']}, {results['seconds']:.0f} s. Random weights, BatchNorm statistics randomised.",
        "",
    ]
    for model, sec in results["sections"].get("profile", {}).items():
        if not isinstance(sec, dict) or "variants" not in sec:
            continue
        variants = sec["variants"]
        lines += [
            f"## {model}, batch {sec['batch']}, {sec['threads']} threads",
            "",
            f"torchslim int8 parity vs its PyTorch simulation: ok={sec['parity_ok']}, "
            f"max steps {sec['parity_max_steps']}",
            "",
            "| variant | ms | ratio to fp32 | QuantizeLinear | DequantizeLinear | kernel ms |",
            "|---|---|---|---|---|---|",
        ]
        for name, v in variants.items():
            lat = v.get("latency", {})
            lines.append(
                f"| {name} | {lat.get('ms')} | {lat.get('ratio', 0):.3f}x | {v['quantize_linear']} | "
                f"{v['dequantize_linear']} | {v['profile']['total_ms']:.3f} |"
            )
        ops = sorted({op for v in variants.values() for op in v["profile"]["ops"]})
        lines += ["", "| operator (ms per run, calls) | " + " | ".join(variants) + " |"]
        lines.append("|---" * (len(variants) + 1) + "|")
        for op in ops:
            cells = []
            for v in variants.values():
                o = v["profile"]["ops"].get(op)
                cells.append(f"{o['ms']:.3f} ({o['calls']})" if o else "")
            lines.append(f"| {op} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def to_markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Where int8 latency goes on onnxruntime",
        "",
        f"onnxruntime sessions alone, rotating rounds, medians; {results['env']['date']}, {results['seconds']:.0f} s.",
        "",
    ]
    fm = results["sections"].get("fmnist")
    if isinstance(fm, dict) and "threads" in fm:
        lines += ["## fmnist-cnn, batch 64 (ratio = variant / fp32 model)", ""]
        for threads, row in fm["threads"].items():
            lines += [f"### {threads} thread(s)", "", "| variant | ms | ratio |", "|---|---|---|"]
            lines += [f"| {name} | {r['ms']} | {r['ratio']:.3f}x |" for name, r in row["latency"].items()]
            lines += [
                "",
                f"- first stage's share of the fp32 model (stage 1 / (stage 1 + rest), both fp32, timed alone): "
                f"{row['stage1_share_of_fp32']:.3f}",
                f"- onnxruntime int8 speed-up of the rest: {row['rest_int8_speedup']}x",
                f"- speed-up the rest would need for 0.5x overall (first stage at its fp32 cost): "
                f"{row['rest_speedup_needed_for_0.5x']}x",
                "",
            ]
    ml = results["sections"].get("minilm")
    if isinstance(ml, dict) and "latency" in ml:
        lines += [
            f"## MiniLM-L6, batch {ml['batch']} x {ml['sequence']} tokens, {ml['threads']} threads "
            "(ratio = variant / fp32 SDPA export)",
            "",
            "| variant | ms | ratio |",
            "|---|---|---|",
        ]
        lines += [f"| {name} | {r['ms']} | {r['ratio']:.3f}x |" for name, r in ml["latency"].items()]
        lines.append("")
    for name, value in results["sections"].items():
        if isinstance(value, dict) and "error" in value and len(value) <= 2:
            lines += [f"## {name}: FAILED", "", "```", value["error"], "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="fmnist,minilm", help=f"comma-separated sections of {list(SECTIONS)}")
    parser.add_argument("--threads", type=int, default=2, help="threads of the minilm section")
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--profile-stem", default="int8_profile", help="file stem of the profile section's results")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    default_cache = Path(os.environ.get("TORCHSLIM_CACHE") or "~/.cache/torchslim").expanduser() / "benchmarks"
    parser.add_argument("--cache", type=Path, default=default_cache, help="where the trained fmnist-cnn is kept")
    parser.add_argument("--no-cache", action="store_true", help="always train the float fmnist-cnn")
    parser.add_argument("--quick", action="store_true", help="few rounds, the quick benchmark's fmnist-cnn")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds = min(args.rounds, 10)
        args.profile_stem += "_quick"
    import onnxruntime

    results: dict[str, Any] = {
        "env": {
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "cpus": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d %H:%M"),
        }
    }
    started = time.perf_counter()
    results["sections"] = run_sections(args.only, SECTIONS, lambda fn: fn(args), error=parser.error)
    results["seconds"] = round(time.perf_counter() - started, 1)
    for section, stem, render in (
        ("profile", args.profile_stem, profile_markdown),
        ("peers", args.profile_stem + "_peers", peers_markdown),
    ):
        if section in results["sections"]:
            part = {**results, "sections": {section: results["sections"].pop(section)}}
            write_results(args.out, stem, part, render(part))
            log(f"wrote {args.out / (stem + '.json')} and .md")
    if not results["sections"]:
        return 0
    stem = "int8_breakdown_quick" if args.quick else "int8_breakdown"
    write_results(args.out, stem, results, to_markdown(results))
    log(f"wrote {args.out / (stem + '.json')} and .md in {results['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
