"""Deployment backends side by side: torchslim int8 on onnxruntime, OpenVINO and ExecuTorch (XNNPACK).

`python benchmarks/backends.py [--quick] [--only fmnist-cnn,efficientnet-lite0]` exports each
model's torchslim int8 form (default ``Quantize()``: static per-channel int8 weights, per-tensor
int8 activations, calibrated on 64 inputs) and its fp32 form to every backend with
:func:`torchslim.deploy.select_backend`, checks each runtime's output against torchslim's
simulation, and times all of them in alternating rounds at batch 1 on 1 thread (a phone-like core)
and batch 32 on 2 threads. `picked` is what ``torchslim deploy --target auto`` keeps: the fastest
backend whose parity passed. Writes benchmarks/results/backends[_quick].{json,md,png}.

Inputs are random (latency does not depend on the values); efficientnet-lite0 has its shipped
pretrained weights, fmnist-cnn random ones. Parity is measured on the timed batch (its first
sample repeated) and, for the parity table, with the batch-1 files on 8 distinct random inputs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import bar_plot, env_line, log, md_table, new_results, run_sections, write_results  # noqa: E402

BACKENDS = ("onnxruntime", "openvino", "executorch")
SETTINGS = ((1, 1), (32, 2))
SHAPES = {"fmnist-cnn": (1, 28, 28), "efficientnet-lite0": (3, 224, 224)}


def int8_model(name: str) -> tuple[torch.nn.Module, torch.nn.Module, torch.Tensor]:
    """The fp32 model, its torchslim int8 form and 8 held-out random inputs."""
    from torchslim.core import Context, DataSplits
    from torchslim.models import build_model
    from torchslim.quantization import Quantize, quantize_handler

    fp32 = build_model(name, seed=0).eval()
    gen = torch.Generator().manual_seed(0)
    calib = [(torch.rand(16, *SHAPES[name], generator=gen), torch.zeros(16, dtype=torch.long)) for _ in range(4)]
    context = Context(data=DataSplits(train=None, calibration=calib, validation=calib, test=calib))
    int8 = quantize_handler(fp32, Quantize(), targets=None, context=context).model.eval()
    return fp32, int8, torch.rand(8, *SHAPES[name], generator=gen)


def held_out_parity(int8: torch.nn.Module, held_out: torch.Tensor, files: Path) -> dict[str, Any]:
    """Per backend: output difference from torchslim's simulation on 8 distinct inputs, in steps of
    ``(max - min) / 255`` of the simulated output, with the lowest cosine, top-1 agreement, mean
    difference and ``check_parity``'s verdict (``compare_outputs``: within 2 steps, close, failed). Runs the
    files `select_backend` exported at batch 1 into `files` (an ExecuTorch program has static
    shapes, so it runs the inputs one at a time)."""
    from torchslim.deploy import compare_outputs, get_backend

    with torch.no_grad():
        ref = int8(held_out).float().numpy()
    out: dict[str, Any] = {}
    for name in BACKENDS:
        backend = get_backend(name)
        path = files / f"{name}-model{backend.suffix}"
        if not path.is_file():
            out[name] = {"error": "not exported (see the latency table)"}
            continue
        try:
            if name == "executorch":
                rows = [np.asarray(backend.run(path, x[None], threads=2)) for x in held_out]
                got = np.concatenate(rows).astype(np.float32)
            else:
                got = np.asarray(backend.run(path, held_out, threads=2), dtype=np.float32)
        except Exception as exc:  # noqa: BLE001 - a backend that cannot run is a row, not a crash
            out[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
            continue
        parity = compare_outputs(ref, got, quantized=True)
        out[name] = {
            "max_steps": parity.max_diff_in_steps,
            "p99_steps": float(np.quantile(np.abs(got - ref), 0.99) / parity.step) if parity.step else None,
            "cosine": parity.cosine,
            "top1_agreement": parity.top1_agreement,
            "mean_diff_steps": parity.mean_diff_in_steps,
            "norm_change": parity.norm_change,
            "verdict": parity.verdict.replace("within steps", "within 2 steps"),
        }
    return out


def picked_backend(backends: list[dict[str, Any]]) -> str | None:
    """The fastest backend (median ms) among those whose parity passed: ``--target auto``'s choice."""
    usable = [b for b in backends if b.get("usable") and b.get("latency")]
    return min(usable, key=lambda b: b["latency"]["median_ms"])["name"] if usable else None


def run_model(name: str, *, rounds: int, repeats: int, directory: Path) -> dict[str, Any]:
    from torchslim.deploy import select_backend

    fp32, int8, held_out = int8_model(name)
    rows = []
    for batch, threads in SETTINGS:
        log(f"{name}: batch {batch}, {threads} thread(s)")
        sel = select_backend(
            int8,
            held_out[:1],
            batch_size=batch,
            threads=threads,
            baseline=fp32,
            candidates=list(BACKENDS),
            rounds=rounds,
            repeats=repeats,
            require_parity=False,
            directory=directory / name / f"b{batch}",
        )
        row = sel.to_dict()
        rows.append({"batch": batch, "threads": threads, "picked": picked_backend(row["backends"]), **row})
    return {"settings": rows, "held_out_parity": held_out_parity(int8, held_out, directory / name / "b1")}


def _cell(facts: dict[str, Any]) -> str:
    lat, base = facts.get("latency"), facts.get("baseline_latency")
    if not facts.get("available"):
        return "not installed"
    if lat is None:
        return f"failed ({facts.get('reason')})"
    text = f"{lat['median_ms']:.3f}"
    if base:
        text += f" / {base['median_ms']:.3f} ({base['median_ms'] / lat['median_ms']:.2f}x)"
    if not facts.get("parity_ok"):
        text += " parity failed"
    elif (facts.get("parity") or {}).get("close"):
        text += " (parity: close)"
    return text


def plot_groups(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per model and setting: each runtime's int8 and fp32 median ms (the bars of the plot)."""
    groups: dict[str, dict[str, float]] = {}
    for name, section in results["sections"].items():
        for row in section.get("settings", []):
            bars: dict[str, float] = {}
            for facts in row["backends"]:
                if facts.get("latency"):
                    bars[f"torchslim int8, {facts['name']}"] = facts["latency"]["median_ms"]
                if facts.get("baseline_latency"):
                    bars[f"fp32, {facts['name']}"] = facts["baseline_latency"]["median_ms"]
            groups[f"{name}, batch {row['batch']}, {row['threads']} thread(s)"] = bars
    return groups


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"# Deployment backends ({'quick run' if results['quick'] else 'full run'})",
        "",
        env_line(results["env"]),
        "",
        "Each cell: torchslim int8 median ms / fp32 median ms on that runtime (fp32 / int8 speed-up), "
        "alternating rounds in one run. `picked`: the fastest backend whose parity passed "
        "(what `torchslim deploy --target auto` keeps); `fastest`: with or without parity.",
        "",
    ]
    rows = []
    parity_rows = []
    for name, section in results["sections"].items():
        if "error" in section:
            rows.append([name, "", "", *(["error: " + section["error"]] + [""] * (len(BACKENDS) - 1)), "", ""])
            continue
        for row in section["settings"]:
            by_name = {b["name"]: b for b in row["backends"]}
            timed = [b for b in row["backends"] if b.get("latency")]
            fastest = min(timed, key=lambda b: b["latency"]["median_ms"])["name"] if timed else None
            margin = f" ({row['margin']:.2f}x)" if row.get("margin") and row["picked"] == row["best"] else ""
            cells = [_cell(by_name[b]) if b in by_name else "" for b in BACKENDS]
            rows.append([name, row["batch"], row["threads"], *cells, f"{row['picked']}{margin}", fastest])
        for backend, p in section["held_out_parity"].items():
            if "error" in p:
                parity_rows.append([name, backend, p["error"], "", "", "", "", ""])
            else:
                parity_rows.append(
                    [
                        name,
                        backend,
                        f"{p['max_steps']:.2f}",
                        f"{p['p99_steps']:.2f}",
                        f"{p['cosine']:.5f}",
                        f"{p['top1_agreement']:.3f}",
                        f"{p['mean_diff_steps']:+.3f}" if p.get("mean_diff_steps") is not None else "",
                        p.get("verdict", ""),
                    ]
                )
    lines += md_table(["model", "batch", "threads", *(f"{b} ms" for b in BACKENDS), "picked", "fastest"], rows)
    lines += [
        "",
        "Parity on 8 distinct random inputs: runtime output vs torchslim's simulated int8 output, in steps of "
        "(max - min) / 255 of the simulated output. `check_parity` passes an output within 2 steps, or close: "
        "every sample's cosine >= 0.998, mean difference within 0.5 steps, norms within 5%, the same top-1 "
        "(docs/deploy.md, Parity).",
        "",
    ]
    headers = ["model", "backend", "max steps", "p99 steps", "lowest cosine", "top-1 agreement", "mean diff (steps)"]
    lines += md_table([*headers, "verdict"], parity_rows)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds x 5 repeats instead of 5 x 10")
    parser.add_argument("--only", default=",".join(SHAPES), help=f"comma-separated models of {list(SHAPES)}")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    rounds, repeats = (3, 5) if args.quick else (5, 10)
    results = new_results(quick=args.quick, threads=2, rounds=rounds, repeats=repeats)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="torchslim-backends-") as tmp:
        sections = {
            name: (lambda n=name: run_model(n, rounds=rounds, repeats=repeats, directory=Path(tmp))) for name in SHAPES
        }
        results["sections"] = run_sections(args.only, sections, lambda fn: fn(), error=parser.error)
    stem = "backends_quick" if args.quick else "backends"
    write_results(args.out, stem, results, markdown(results))
    groups = plot_groups(results)
    bar_plot(args.out / f"{stem}.png", "torchslim int8 per runtime", groups, xlabel="ms", reference=None)
    log(f"wrote {args.out / stem}.md")
    return 1 if any("error" in s for s in results["sections"].values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
