"""Where int8 latency goes on onnxruntime: the measurements behind two export decisions.

    python benchmarks/int8_breakdown.py            # both sections, ~3 minutes on 2 cores
    python benchmarks/int8_breakdown.py --only fmnist

Sections:

* ``fmnist``: fmnist-cnn (the trained model ``benchmarks/quantization.py`` caches) split at its first
  max-pool. Times, in rounds of onnxruntime sessions alone at batch 64 and 1 / 2 threads: the whole
  model in fp32, torchslim int8 (default: the 1-channel conv1 float), torchslim int8 with
  ``quantize_single_channel_convs=True`` (conv1 int8, exported as four shifted channels), the first
  stage (conv1, relu, pool) in fp32 alone, and the rest (conv2 .. classifier) alone in int8 and fp32.
  From these: the first stage's share of the fp32 model, the int8 speed-up onnxruntime gives the rest,
  and the speed-up the rest would need for the whole int8 model to reach 0.5x of fp32.
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


SECTIONS = {"fmnist": section_fmnist, "minilm": section_minilm}


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
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {list(SECTIONS)}")
    parser.add_argument("--threads", type=int, default=2, help="threads of the minilm section")
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    default_cache = Path(os.environ.get("TORCHSLIM_CACHE") or "~/.cache/torchslim").expanduser() / "benchmarks"
    parser.add_argument("--cache", type=Path, default=default_cache, help="where the trained fmnist-cnn is kept")
    parser.add_argument("--no-cache", action="store_true", help="always train the float fmnist-cnn")
    parser.add_argument("--quick", action="store_true", help="few rounds, the quick benchmark's fmnist-cnn")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds = min(args.rounds, 10)
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
    stem = "int8_breakdown_quick" if args.quick else "int8_breakdown"
    write_results(args.out, stem, results, to_markdown(results))
    log(f"wrote {args.out / (stem + '.json')} and .md in {results['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
