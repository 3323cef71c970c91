"""How fast int8 can go on this machine: the ceiling behind issue 14's ResNet-18 speed-up goals.

    python benchmarks/int8_ceiling.py            # ~70 s on 2 cores
    python benchmarks/int8_ceiling.py --quick    # fewer rounds, ~45 s

A speed-up over PyTorch fp32 eager is bounded by the rate at which the CPU multiplies int8 values:
a model of M multiply-accumulates (MACs) cannot run in less than ``M / peak`` seconds, so its
speed-up cannot exceed ``eager_seconds * peak / M``. Sections:

* ``peak``: the machine's int8 convolution rate. Stacks of four 3x3 convolutions (C channels, H x H
  maps, batch 32), quantized by torchslim (per-channel int8) and run by OpenVINO's CPU plugin
  (oneDNN's VNNI kernels, the fastest int8 runtime measured in ``deploy_speed.py``), with one stream of
  all threads and with the batch split over one stream per thread; GMAC/s = MACs / median time.
  The largest rate over the shapes is the peak; PyTorch fp32 eager runs the same stacks for scale.
* ``settle``: why the harness runs untimed calls before each timed one (``SETTLE_MS``): batch 1, the
  pruned int8 ResNet-18 shape on ExecuTorch and OpenVINO next to fp32 eager, timed with one call per
  round, with the settled call, and each alone with its calls back to back.
* ``models``: the ResNet-18 shape of ``_deploy_models.py`` dense and with 50% of its channels pruned
  (torchslim ``ChannelPruning(0.5)``), torchslim int8 on OpenVINO at batch 1 and 32, timed in rotating
  rounds against PyTorch fp32 eager, plus OpenVINO's per-layer profile (``PERF_COUNT``): the share of
  time in convolutions and the rate of every convolution. For each row: the speed-up measured, the
  issue's goal, the GMAC/s the goal needs, and the ceiling ``eager ms * peak / MACs``.

Writes ``benchmarks/results/int8_ceiling.json`` and ``.md`` (``_quick`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))
sys.path.insert(0, str(ROOT))

import _deploy_models as dm  # noqa: E402
from _harness import (  # noqa: E402
    SETTLE_MS,
    env_line,
    log,
    md_table,
    new_results,
    rotating_latency,
    rotating_times,
    torch_fn,
    write_results,
)
from torchslim.deploy.openvino.session import compile_ir  # noqa: E402

PROBE_SHAPES = ((512, 4), (512, 8), (256, 16), (128, 32), (64, 32))
"""(channels, map size) of the convolution stacks timed for the peak rate."""

GOALS = {("dense", 32): 5.5, ("50% channels", 1): 30.0, ("50% channels", 32): 18.0}
"""Issue 14's speed-up goals over PyTorch fp32 eager for the ResNet-18 shape (int8 on 2 threads)."""

PROBE_BATCH = 32


def openvino_call(xml: Path, x: torch.Tensor, *, threads: int, streams: int = 1) -> Callable[[], Any]:
    """One inference of batch `x`, split evenly over `streams` infer requests run at once."""
    if len(x) % streams:
        raise ValueError(f"batch {len(x)} does not split over {streams} streams")
    part = len(x) // streams
    compiled = compile_ir(xml, threads=threads, shapes=[(part, *x.shape[1:])], streams=streams)
    requests = [compiled.create_infer_request() for _ in range(streams)]
    arrays = [np.ascontiguousarray(x[i * part : (i + 1) * part].numpy()) for i in range(streams)]
    if streams == 1:  # a synchronous call, as deploy_speed.py and torchslim's backend time it
        return lambda: requests[0].infer({0: arrays[0]})

    def run() -> None:
        for request, array in zip(requests, arrays, strict=True):
            request.start_async({0: array})
        for request in requests:
            request.wait()

    return run


def int8_ir(model: nn.Module, configs: list[Any], data: torch.Tensor, xml: Path) -> nn.Module:
    """`model` through torchslim's recipe of `configs` (calibrated on `data`), exported as IR to `xml`."""
    from torchslim.deploy import export_openvino

    labelled = [(x, torch.zeros(len(x), dtype=torch.long)) for x in data.split(32)]
    compressed = dm.torchslim_recipe(model, configs, labelled)
    export_openvino(compressed, xml, data[:1])
    return compressed


def section_peak(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from torchslim.quantization import Quantize

    rows = []
    for channels, size in PROBE_SHAPES:
        torch.manual_seed(0)
        stack = nn.Sequential(*[nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1), nn.ReLU()) for _ in range(4)])
        data = torch.randn(PROBE_BATCH, channels, size, size)
        xml = tmp / f"probe_{channels}_{size}.xml"
        int8_ir(stack.eval(), [Quantize()], data, xml)
        macs = 4 * PROBE_BATCH * channels * channels * 9 * size * size
        fns = {
            "fp32 eager": torch_fn(stack.eval(), data),
            "int8 1 stream": openvino_call(xml, data, threads=args.threads),
            f"int8 {args.threads} streams": openvino_call(xml, data, threads=args.threads, streams=args.threads),
        }
        timed = rotating_latency(fns, "fp32 eager", rounds=args.rounds, threads=args.threads)
        rates = {k: round(macs / (v["ms"] / 1e3) / 1e9, 1) for k, v in timed.items()}
        log(f"  probe C={channels} H={size}: {rates}")
        rows.append({"channels": channels, "size": size, "macs": macs, "gmac_per_s": rates})
    int8_rates = [r for row in rows for k, r in row["gmac_per_s"].items() if k.startswith("int8")]
    return {"batch": PROBE_BATCH, "rows": rows, "peak_gmac_per_s": max(int8_rates)}


def layer_profile(xml: Path, x: torch.Tensor, *, threads: int, repeats: int) -> dict[str, Any]:
    """OpenVINO's per-layer times (ms, the median over `repeats` profiled calls) for batch `x`,
    summed by layer type, and the rate of each convolution (MACs from the IR's weight shapes)."""
    import openvino as ov

    compiled = compile_ir(xml, threads=threads, shapes=[tuple(x.shape)], profile=True)
    request = compiled.create_infer_request()
    array = np.ascontiguousarray(x.numpy())
    per_call: dict[str, list[float]] = collections.defaultdict(list)
    kinds: dict[str, str] = {}
    for _ in range(3):
        request.infer({0: array})
    for _ in range(repeats):
        request.infer({0: array})
        for info in request.get_profiling_info():
            per_call[info.node_name].append(info.real_time.total_seconds() * 1e3)
            kinds[info.node_name] = info.node_type
    ms = {name: statistics.median(times) for name, times in per_call.items()}
    by_type: collections.Counter[str] = collections.Counter()
    for name, value in ms.items():
        by_type[kinds[name]] += value
    model = ov.Core().read_model(str(xml))
    model.reshape({model.inputs[0].get_any_name(): list(x.shape)})
    convs = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Convolution" or op.get_friendly_name() not in ms:
            continue
        weight = [int(d) for d in op.input(1).get_shape()]
        out_shape = [int(d) for d in op.output(0).get_shape()]
        macs = int(np.prod(out_shape)) * int(np.prod(weight[1:]))
        took = ms[op.get_friendly_name()]
        convs.append(
            {
                "name": op.get_friendly_name(),
                "weight": weight,
                "output": out_shape,
                "macs": macs,
                "ms": round(took, 4),
                "gmac_per_s": round(macs / (took / 1e3) / 1e9, 1) if took > 0 else None,
            }
        )
    total = sum(ms.values())
    return {
        "total_ms": round(total, 4),
        "by_type_ms": {k: round(v, 4) for k, v in by_type.most_common()},
        "convs": convs,
    }


def section_settle(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Batch 1, the ResNet-18 shape with 50% channels + int8 on ExecuTorch and OpenVINO next to fp32
    eager: one timed call per round right after the others, the harness's settled call, and each
    callable alone (its calls back to back, no other runtime in between)."""
    from deploy_speed import executorch_variant, torchslim_openvino_variant
    from torchslim.pruning import ChannelPruning
    from torchslim.quantization import Quantize

    gen = torch.Generator().manual_seed(1)
    data = torch.randn(64 + 1, 3, 32, 32, generator=gen)
    model = dm.resnet18(data[:64])
    labelled = [(x, torch.zeros(len(x), dtype=torch.long)) for x in data[:64].split(32)]
    compressed = dm.torchslim_recipe(model, [ChannelPruning(ratio=0.5), Quantize()], labelled)
    x = data[64:].contiguous()
    fns = {
        "fp32 eager": torch_fn(model, x),
        "int8 ExecuTorch": executorch_variant("pruned", compressed, tmp / "settle_et", args.threads).bind(x),
        "int8 OpenVINO": torchslim_openvino_variant("pruned", compressed, tmp / "settle.xml", args.threads).bind(x),
    }
    rounds = args.rounds * 3
    schemes = {
        "one call per round": rotating_times(fns, rounds=rounds, threads=args.threads, settle_ms=0),
        f"settled ({SETTLE_MS:g} ms of untimed calls first)": rotating_times(fns, rounds=rounds, threads=args.threads),
        "alone, back to back": {
            k: rotating_times({k: fn}, rounds=rounds, threads=args.threads, settle_ms=0)[k] for k, fn in fns.items()
        },
    }
    out = {name: {k: round(statistics.median(v), 3) for k, v in times.items()} for name, times in schemes.items()}
    log(f"  settle: {out}")
    return {"batch": 1, "rounds": rounds, "median_ms": out}


def section_models(args: argparse.Namespace, tmp: Path, peak: float) -> dict[str, Any]:
    from torchslim.pruning import ChannelPruning
    from torchslim.quantization import Quantize

    gen = torch.Generator().manual_seed(1)
    data = torch.randn(64 + 32, 3, 32, 32, generator=gen)
    calibration, test = data[:64], data[64:]
    model = dm.resnet18(calibration)
    variants = {"dense": [Quantize()], "50% channels": [ChannelPruning(ratio=0.5), Quantize()]}
    rows = []
    for label, configs in variants.items():
        xml = tmp / f"resnet18_{label.split()[0].rstrip('%')}.xml"
        compressed = int8_ir(model, configs, calibration, xml)
        for batch in args.batches:
            x = test[:batch].contiguous()
            macs = dm.macs(compressed, x) * batch  # dm.macs counts one image
            fns = {"fp32 eager": torch_fn(model, x), "int8 OpenVINO": openvino_call(xml, x, threads=args.threads)}
            if batch % args.threads == 0 and batch >= args.threads:
                fns["int8 OpenVINO, batch split"] = openvino_call(xml, x, threads=args.threads, streams=args.threads)
            rounds = args.rounds * (3 if batch == 1 else 1)
            timed = rotating_latency(fns, "fp32 eager", rounds=rounds, threads=args.threads)
            profile = layer_profile(xml, x, threads=args.threads, repeats=args.rounds)
            conv_ms = sum(c["ms"] for c in profile["convs"])
            eager_ms = timed["fp32 eager"]["ms"]
            goal = GOALS.get((label, batch))
            row = {
                "model": f"ResNet-18 {label} int8",
                "batch": batch,
                "macs": macs,
                "timed": timed,
                "goal_speedup": goal,
                "goal_needs_gmac_per_s": round(macs * goal / (eager_ms / 1e3) / 1e9, 1) if goal else None,
                "ceiling_speedup": round(eager_ms / 1e3 * peak * 1e9 / macs, 2),
                "conv_share": round(conv_ms / profile["total_ms"], 3) if profile["total_ms"] else None,
                "conv_gmac_per_s": round(sum(c["macs"] for c in profile["convs"]) / (conv_ms / 1e3) / 1e9, 1),
                "profile": profile,
            }
            log(f"  {row['model']} b{batch}: {timed} ceiling {row['ceiling_speedup']}x")
            rows.append(row)
    return {"rows": rows}


def to_markdown(results: dict[str, Any]) -> str:
    peak, models = results["sections"]["peak"], results["sections"]["models"]
    out = [
        f"# int8 ceiling{' (quick run)' if results['quick'] else ''}",
        "",
        env_line(results["env"]),
        "",
        "A model of M MACs runs in no less than M / peak seconds; its speed-up over PyTorch fp32 eager is",
        "at most `eager ms * peak / M` (`python benchmarks/int8_ceiling.py`).",
        "",
        f"## Peak int8 rate: {peak['peak_gmac_per_s']} GMAC/s",
        "",
        f"Four 3x3 convolutions, C channels on H x H maps, batch {peak['batch']}; torchslim int8 on OpenVINO "
        "(one stream of all threads, or the batch split over one stream per thread); GMAC/s.",
        "",
    ]
    kinds = list(peak["rows"][0]["gmac_per_s"])
    out += md_table(
        ["C", "H", "MACs", *kinds],
        [[r["channels"], r["size"], f"{r['macs'] / 1e9:.2f} G", *r["gmac_per_s"].values()] for r in peak["rows"]],
    )
    out += ["", "## ResNet-18 (3x32x32) against the ceiling", ""]
    rows = []
    for r in models["rows"]:
        timed = r["timed"]
        best = max((k for k in timed if k != "fp32 eager"), key=lambda k: timed[k]["speedup"])
        rows.append(
            [
                r["model"],
                r["batch"],
                f"{r['macs'] / 1e9:.2f} G",
                timed["fp32 eager"]["ms"],
                f"{timed[best]['ms']} ({best})",
                f"{timed[best]['speedup']}x",
                f"{r['conv_gmac_per_s']} GMAC/s, {r['conv_share']:.0%} of the time",
                f"{r['goal_speedup']}x" if r["goal_speedup"] else "",
                r["goal_needs_gmac_per_s"] or "",
                f"{r['ceiling_speedup']}x",
            ]
        )
    out += md_table(
        [
            "model",
            "batch",
            "MACs",
            "fp32 eager ms",
            "int8 ms",
            "speed-up",
            "convolutions (profile)",
            "goal",
            "GMAC/s the goal needs",
            "ceiling at the peak rate",
        ],
        rows,
    )
    out += ["", "Per-convolution times and rates: the JSON file (`sections.models.rows[*].profile.convs`).", ""]
    settle = results["sections"].get("settle")
    if settle:
        out += [
            "## Timing a call after another runtime's",
            "",
            f"ResNet-18 50% channels + int8, batch 1, median ms over {settle['rounds']} rounds: one timed call "
            "right after the other callables, the harness's settled call, and each callable timed alone.",
            "",
        ]
        names = list(next(iter(settle["median_ms"].values())))
        out += md_table(["timing", *names], [[k, *v.values()] for k, v in settle["median_ms"].items()])
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds = min(args.rounds, 6)
    torch.set_num_threads(args.threads)
    results = new_results(quick=args.quick, threads=args.threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ts-bench-ceiling-") as tmp:
        log("section peak ...")
        results["sections"]["peak"] = section_peak(args, Path(tmp))
        log("section models ...")
        results["sections"]["models"] = section_models(args, Path(tmp), results["sections"]["peak"]["peak_gmac_per_s"])
        log("section settle ...")
        results["sections"]["settle"] = section_settle(args, Path(tmp))
    results["seconds"] = round(time.perf_counter() - started, 1)
    stem = "int8_ceiling_quick" if args.quick else "int8_ceiling"
    write_results(args.out, stem, results, to_markdown(results))
    log(f"wrote {args.out / (stem + '.json')} and .md in {results['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
