#!/usr/bin/env python3
"""Measured J/inference of EfficientNet-Lite0 fp32 vs compressed on an NVIDIA GPU, next to the estimate.

    .venv/bin/python scripts/gpu-energy.py [--batch 64] [--seconds 10] [--idle-seconds 5] \
        [--rounds 3] [--ratio 0.5] [--fp16] [--out gpu-energy.json]

For each model (the fp32 original; the compressed one: ``channel_pruning`` at ``--ratio`` with no
fine-tuning, which removes channels physically so the GPU really does less work; with ``--fp16``
also that model in half precision) the script calls
:func:`torchslim.measure.inference_energy.measure_inference_energy`: NVML's total-energy counter over
an idle window (idle power, reported) and then over a timed window of many batches at ``--batch``,
idle energy subtracted, divided by the inferences. Models are measured in alternating rounds
(A, B, A, B, ...) and the median per model is reported, so slow drifts (clock, temperature) hit both.
Next to each measurement: the analytical estimate (horowitz-45nm profile, circuit energy on an
accelerator, not board power; it is there to be checked against the measurement, not to agree).

Exit codes: 0 measured; 77 skipped, with the reason on stderr (no CUDA device, or no readable NVML
energy counter: no driver, ``nvidia-ml-py`` missing, a GPU older than Volta); 1 any other error.
No number is printed that was not measured.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
from pathlib import Path
from typing import Any

SKIPPED = 77


def _skip(reason: str) -> None:
    print(f"SKIPPED: {reason}", file=sys.stderr)
    raise SystemExit(SKIPPED)


def _check_device(device: str) -> dict[str, Any]:
    """What the counter runs on, or exit 77 when there is no CUDA device or no readable energy counter
    (``--device cpu`` reads RAPL instead of NVML: the same method, for a machine that exposes it)."""
    import torch

    from torchslim.measure.power import DEFAULT_POWERCAP_ROOT, CounterUnavailable, NvmlCounter, RaplCounter

    if device == "cpu":
        try:
            RaplCounter(DEFAULT_POWERCAP_ROOT).close()
        except CounterUnavailable as exc:
            _skip(f"the RAPL energy counter cannot be read: {exc}")
        return {"device": "cpu", "torch": torch.__version__, "threads": torch.get_num_threads()}
    if not torch.cuda.is_available():
        _skip("no CUDA device here (torch.cuda.is_available() is False); this script needs an NVIDIA GPU.")
    try:
        counter = NvmlCounter(0)
    except CounterUnavailable as exc:
        _skip(f"the NVML energy counter cannot be read: {exc}")
    counter.close()
    name = torch.cuda.get_device_name(0)
    return {"device": "cuda", "gpu": name, "torch": torch.__version__, "cuda": torch.version.cuda}


def _models(ratio: float, batch: int, fp16: bool) -> dict[str, Any]:
    """The fp32 original and its compressed versions, on the CPU (measure_inference_energy copies them)."""
    import torch

    from torchslim.api import run_recipe
    from torchslim.core.context import Context
    from torchslim.core.recipe import Recipe
    from torchslim.models import build_model, example_input

    original = build_model("efficientnet-lite0")
    example = example_input(original, batch_size=batch)
    assert isinstance(example, torch.Tensor)  # an image model
    recipe = Recipe.from_dict(
        {
            "steps": [
                {
                    "technique": "channel_pruning",
                    "targets": {"exclude": ["role:head"]},
                    "config": {"ratio": ratio, "train": {"epochs": 0}},
                }
            ]
        }
    )
    pruned, _ = run_recipe(copy.deepcopy(original), recipe, context=Context(example_input=example, quiet=True))
    pruned.eval()
    models = {"fp32": (original, example), f"pruned-{ratio:g}": (pruned, example)}
    if fp16:
        models[f"pruned-{ratio:g}-fp16"] = (copy.deepcopy(pruned).half(), example.half())
    return models


def _measure(models: dict[str, Any], args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    from torchslim.measure.inference_energy import measure_inference_energy

    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in models}
    for index in range(args.rounds):
        for name, (model, example) in models.items():
            result = measure_inference_energy(
                model,
                example,
                device=args.device,
                seconds=args.seconds,
                idle_seconds=args.idle_seconds,
                min_batches=args.min_batches,
            )
            row = result.to_dict()
            rounds[name].append(row)
            shown = row["measured_uj"]
            value = f"{shown / 1e3:,.3f} mJ/inference" if shown is not None else "not measured"
            value += "" if shown is not None else f": {row.get('not_measurable')}"
            print(f"round {index + 1}/{args.rounds} {name}: {value}", flush=True)
    return rounds


def _summary(rounds: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, rows in rounds.items():
        measured = [r["measured_uj"] for r in rows if r["measured_uj"] is not None]
        idle = [r["measured"]["idle_watts"] for r in rows if "measured" in r]
        out[name] = {
            "measured_mj_per_inference_median": statistics.median(measured) / 1e3 if measured else None,
            "measured_rounds": len(measured),
            "idle_watts_median": statistics.median(idle) if idle else None,
            "estimate_uj_per_inference": rows[0]["estimate_uj"],
            "estimate_source": rows[0]["estimate_source"],
        }
    return out


def _print_table(summary: dict[str, dict[str, Any]], batch: int) -> None:
    print(f"\nbatch {batch}; measured = NVML board energy above idle; estimate = circuit-energy model")
    print(f"{'model':<22}{'measured mJ/inf':>18}{'idle W':>10}{'estimate uJ/inf':>18}")
    base = next(iter(summary.values()))
    for name, row in summary.items():
        measured, idle = row["measured_mj_per_inference_median"], row["idle_watts_median"]
        print(
            f"{name:<22}{'-' if measured is None else f'{measured:,.4f}':>18}"
            f"{'-' if idle is None else f'{idle:,.1f}':>10}{row['estimate_uj_per_inference']:>18,.2f}"
        )
    for name, row in list(summary.items())[1:]:
        m0, m1 = base["measured_mj_per_inference_median"], row["measured_mj_per_inference_median"]
        e0, e1 = base["estimate_uj_per_inference"], row["estimate_uj_per_inference"]
        ratio_m = f"{m1 / m0:.3f}x" if m0 and m1 else "-"
        print(f"{name} / fp32: measured {ratio_m}, estimated {e1 / e0:.3f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0, help="timed window per measurement")
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="idle window before each measurement")
    parser.add_argument("--min-batches", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ratio", type=float, default=0.5, help="channel_pruning ratio of the compressed model")
    parser.add_argument("--fp16", action="store_true", help="also measure the pruned model in half precision")
    parser.add_argument("--device", default="cuda", help="cuda (NVML) or cpu (RAPL, where readable)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    environment = _check_device(args.device)
    models = _models(args.ratio, args.batch, args.fp16)
    rounds = _measure(models, args)
    summary = _summary(rounds)
    _print_table(summary, args.batch)
    if args.out is not None:
        payload = {"environment": environment, "args": vars(args) | {"out": str(args.out)}, "summary": summary}
        payload["rounds"] = rounds
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
