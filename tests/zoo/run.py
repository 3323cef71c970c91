"""Run every zoo architecture x technique and write the table to docs/zoo.md.

    python -m tests.zoo.run                 # all architectures, all techniques
    python -m tests.zoo.run bert gpt2       # some architectures (the table is written only for a full run)
    python -m tests.zoo.run --techniques prune50

Techniques: ``prune50`` (``channel_pruning`` ratio 0.5, head_ratio 0.5), ``prune50-hidden`` (also
hidden_ratio 0.5: a transformer's hidden size), ``int8`` (``quantize``
with its defaults and one calibration batch), ``prune50+int8``, ``onnx`` (float export +
parity), ``onnx-int8`` (int8 export + parity). Each cell is OK / refused: reason / unchanged /
failed / crash / hang (see tests/zoo/harness.py), under a time limit per cell.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from tests.zoo.harness import Cell, check_nonconstant, export, prune, quantize, run_cell, run_model
from tests.zoo.registry import ARCHS, Arch

TECHNIQUES = ("prune50", "prune50-hidden", "int8", "prune50+int8", "onnx", "onnx-int8")
DOC = Path(__file__).resolve().parents[2] / "docs" / "zoo.md"


def run_arch(arch: Arch, techniques: tuple[str, ...]) -> dict[str, Cell]:
    model, example = arch.build()
    check_nonconstant(run_model(model, example))
    cells: dict[str, Cell] = {}
    quantized: dict[str, Any] = {}

    def do_int8() -> dict[str, Any]:
        q, facts = quantize(copy.deepcopy(model), example)
        quantized["model"], quantized["facts"] = q, facts
        return facts

    def do_prune_int8() -> dict[str, Any]:
        pruned, facts = prune(model, example)
        _, qfacts = quantize(pruned, example)
        return {**facts, **qfacts}

    def do_onnx_int8() -> dict[str, Any]:
        if "model" not in quantized:
            raise AssertionError("int8 did not produce a model")
        by_choice = quantized["facts"].get("float_convs_by_choice", 0)
        return {**export(quantized["model"], example, kernels=True), "float_convs_by_choice": by_choice}

    jobs = {
        "prune50": lambda: prune(model, example)[1],
        "prune50-hidden": lambda: prune(model, example, hidden=True)[1],
        "int8": do_int8,
        "prune50+int8": do_prune_int8,
        "onnx": lambda: export(model, example),
        "onnx-int8": do_onnx_int8,
    }
    for tech in techniques:
        if tech == "onnx-int8" and "int8" not in techniques:
            do_int8_cell = run_cell(do_int8)
            if do_int8_cell.status != "ok":
                cells[tech] = Cell("refused", "int8 step did not run")
                continue
        cells[tech] = run_cell(jobs[tech])
    return cells


def _cell_text(cell: Cell) -> str:
    if cell.status == "ok":
        ratio = cell.facts.get("mac_ratio")
        extra = [f"MACs x{ratio:.2f}"] if ratio is not None else []
        if cell.facts.get("skipped"):
            extra.append(f"{cell.facts['skipped']} layers skipped")
        if cell.facts.get("not_understood"):
            extra.append(f"{cell.facts['not_understood']} couplings left whole")
        if cell.facts.get("conv_layers"):
            by_choice = cell.facts.get("float_convs_by_choice", 0)
            quantized = cell.facts["conv_layers"] - by_choice
            extra.append(f"{cell.facts['integer_convs']}/{quantized} quantized convs integer in onnxruntime")
            if by_choice:
                extra.append(f"{by_choice} one-input-channel conv float by choice")
        if any("use_cache" in n for n in cell.facts.get("notes", ())):
            extra.append("use_cache off")
        return "OK" + (f" ({', '.join(extra)})" if extra else "")
    detail = " ".join(cell.detail.split()).replace("|", "/")
    if len(detail) > 160:
        detail = detail[:157] + "..."
    return f"{cell.status}: {detail}" if detail else cell.status


def integer_share(cell: Cell) -> float | None:
    """Integer convolutions / quantized convolutions of an ``onnx-int8`` cell (None: no convolutions)."""
    quantized = cell.facts.get("conv_layers", 0) - cell.facts.get("float_convs_by_choice", 0)
    return cell.facts["integer_convs"] / quantized if cell.status == "ok" and quantized > 0 else None


def _kernel_summary(results: dict[str, dict[str, Cell]]) -> list[str]:
    shares = [integer_share(r["onnx-int8"]) for r in results.values() if "onnx-int8" in r]
    measured = [x for x in shares if x is not None]
    if not measured:
        return []
    met = sum(x >= 0.9 for x in measured)
    return [
        "",
        f"int8 convolutions: {met} of {len(measured)} architectures with convolutions run >= 90% of their quantized "
        f"convolutions as integer kernels in onnxruntime (lowest share {min(measured):.0%}).",
    ]


def render(results: dict[str, dict[str, Cell]], techniques: tuple[str, ...], command: str, seconds: float) -> str:
    lines = [
        "# Architecture zoo: what each technique does on each architecture",
        "",
        "Generated by `" + command + "` (tests/zoo/run.py); do not edit by hand. Random weights, small",
        "configs, BatchNorm statistics randomised, outputs checked non-constant. `prune50`: `channel_pruning`",
        "ratio 0.5 with head_ratio 0.5 (`prune50-hidden`: hidden_ratio 0.5 too), OK = measured MACs reduced,",
        "output shapes unchanged, tied weights still tied, caller's model untouched; `int8`: `quantize` defaults;",
        "`onnx*`: `torchslim.deploy.export_onnx` + `check_parity` (`onnx-int8`: how many of the convolutions in",
        "onnxruntime's optimized graph run as QLinearConv / ConvInteger, out of those torchslim quantized; a conv",
        "with one input channel stays float by default, measured faster, and is listed). A cell says how many",
        "layers were skipped (with a reason in the step's report) and how many couplings were found to break the",
        "model and left whole.",
        f"Time limit per cell: {os.environ.get('ZOO_TIME_LIMIT', '120')} s. Wall time of the run: {seconds:.0f} s.",
        "",
        "## Counts",
        "",
        "| technique | " + " | ".join(("ok", "refused", "unchanged", "failed", "crash", "hang")) + " |",
        "| --- " * 7 + "|",
    ]
    for tech in techniques:
        counts = Counter(r[tech].status for r in results.values() if tech in r)
        lines.append(
            f"| {tech} | "
            + " | ".join(str(counts.get(s, 0)) for s in ("ok", "refused", "unchanged", "failed", "crash", "hang"))
            + " |"
        )
    lines += ["", f"{len(results)} architectures.", *_kernel_summary(results), "", "## Table", ""]
    lines.append("| architecture | family | " + " | ".join(techniques) + " |")
    lines.append("| --- " * (len(techniques) + 2) + "|")
    for name, row in results.items():
        arch = ARCHS[name]
        lines.append(f"| {name} | {arch.family} | " + " | ".join(_cell_text(row[t]) for t in techniques) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archs", nargs="*", help="architecture names (default: all)")
    parser.add_argument("--techniques", default=",".join(TECHNIQUES))
    parser.add_argument("--json", type=Path, default=None, help="also write the raw cells as JSON")
    parser.add_argument("--out", type=Path, default=DOC, help="where a full run writes the table (docs/zoo.md)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    techniques = tuple(t for t in args.techniques.split(",") if t)
    names = args.archs or list(ARCHS)
    start = time.perf_counter()
    results: dict[str, dict[str, Cell]] = {}
    for name in names:
        try:
            results[name] = run_arch(ARCHS[name], techniques)
        except Exception as exc:  # noqa: BLE001 - a broken zoo entry is reported, not fatal
            results[name] = {t: Cell("crash", f"zoo build: {type(exc).__name__}: {exc}") for t in techniques}
        row = results[name]
        print(f"{name:20s} " + "  ".join(f"{t}={row[t].status}({row[t].seconds:.0f}s)" for t in techniques), flush=True)
        for t in techniques:
            if row[t].status not in ("ok",):
                print(f"    {t}: {row[t].detail[:300]}", flush=True)
    seconds = time.perf_counter() - start
    if args.json:
        args.json.write_text(
            json.dumps({n: {t: vars(c) for t, c in r.items()} for n, r in results.items()}, indent=1, default=str)
        )
    if not args.archs and techniques == TECHNIQUES:
        command = "python -m tests.zoo.run"
        args.out.write_text(render(results, techniques, command, seconds))
        print(f"wrote {args.out}")
    else:
        print(render(results, techniques, "python -m tests.zoo.run " + " ".join(sys.argv[1:]), seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
