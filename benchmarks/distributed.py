"""Data-parallel training benchmark (issue 21, "Must show"): 2 gloo processes against 1, same global batch and seed.

    python benchmarks/distributed.py --quick     # 4,000 training images, 2,000 test images (~15 min on 2 busy cores)
    python benchmarks/distributed.py             # 12,000 training images, the 10,000 test images

Everything runs through the command line, as a user would: a teacher ``lenet5`` is trained once on
Fashion-MNIST (``torchslim train``), then each recipe (fine-tuning, distillation into a half-width
student, QAT int8) is run by ``torchslim compress`` three ways with the same ``--seed`` and
``--train-batch-size`` (the global batch):

* ``1 process``: ``--threads 1``, the reference;
* ``1 process, 2 threads``: the same computation with another float summation order: how far two
  runs that are mathematically the same drift apart (the noise floor of the comparison);
* ``2 processes``: ``--nproc 2`` (torchrun, DDP over gloo, ``--threads 1`` per process, half the
  global batch per process).

Per run: test accuracy from report.json, the largest difference of any stored tensor from the
1-process artifact and the share of stored values that differ, and the wall time (2 processes on
2 cores shared with other work: not a speed claim). Writes ``benchmarks/results/distributed[_quick].json``
and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from _harness import env_line, log, md_table, new_results, write_results  # noqa: E402

RECIPES = {
    "finetune": "  - technique: finetune\n    config:\n      train: {epochs: 1, lr: 0.001}\n",
    "distill": (
        "  - technique: distill\n    config:\n      student: 'width:0.5'\n      temperature: 4.0\n      alpha: 0.9\n"
        "      train: {epochs: 1, lr: 0.003}\n"
    ),
    "qat": "  - technique: quantize\n    config:\n      mode: qat\n      train: {epochs: 1, lr: 0.0001}\n",
}
VARIANTS = {
    "1 process": ["--threads", "1"],
    "1 process, 2 threads": ["--threads", "2"],
    "2 processes": ["--threads", "1", "--nproc", "2"],
}


def torchslim(args: list[str]) -> tuple[float, str]:
    """Run ``python -m torchslim ARGS``; return (seconds, stdout); raise with its stderr on failure."""
    started = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torchslim", *args], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"torchslim {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return time.perf_counter() - started, done.stdout


def stored_difference(a: Path, b: Path) -> dict[str, float]:
    """Largest absolute difference over the stored float tensors of two artifacts, and the share of all
    stored values (float and integer codes) that differ."""
    from safetensors.torch import load_file

    ta, tb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    largest, differ, total = 0.0, 0, 0
    for key in ta.keys() & tb.keys():
        x, y = ta[key], tb[key]
        if x.shape != y.shape or x.dtype != y.dtype:
            continue
        differ += int((x != y).sum())
        total += x.numel()
        if x.is_floating_point() and x.numel():
            largest = max(largest, float((x.double() - y.double()).abs().max()))
    return {"max_abs_difference": largest, "share_differing": differ / max(total, 1)}


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    data = ["--data", "fashion-mnist", "--train-samples", str(args.train_samples)]
    data += ["--eval-samples", str(args.eval_samples), "--seed", str(args.seed)]
    teacher = work / "teacher"
    log(f"teacher: lenet5, {args.teacher_epochs} epochs")
    torchslim(["train", "lenet5", *data, "--epochs", str(args.teacher_epochs), "--out", str(teacher), "--quiet"])
    rows: dict[str, Any] = {}
    for name, steps in RECIPES.items():
        recipe = work / f"{name}.yaml"
        recipe.write_text("version: 1\nsteps:\n" + steps)
        rows[name] = {}
        for variant, extra in VARIANTS.items():
            out = work / f"{name}-{variant.replace(' ', '_').replace(',', '')}"
            command = ["compress", str(teacher), *data, "--recipe", str(recipe), "--out", str(out)]
            command += ["--train-batch-size", str(args.batch), "--json", "--quiet", *extra]
            seconds, _ = torchslim(command)
            report = json.loads((out / "report.json").read_text())
            row = {"before": report["before"]["accuracy"], "accuracy": report["after"]["accuracy"]}
            row["seconds"] = round(seconds, 1)
            if variant != "1 process":
                row.update(stored_difference(work / f"{name}-1_process", out))
            rows[name][variant] = row
            log(f"{name} / {variant}: {row}")
    return rows


def markdown(results: dict[str, Any]) -> str:
    rows = []
    for name, variants in results["sections"]["recipes"].items():
        base = variants["1 process"]["accuracy"]
        for variant, row in variants.items():
            delta = 100 * (row["accuracy"] - base)
            rows.append(
                [
                    name,
                    variant,
                    f"{100 * row['before']:.2f}",
                    f"{100 * row['accuracy']:.2f}",
                    "" if variant == "1 process" else f"{delta:+.2f}",
                    "" if "max_abs_difference" not in row else f"{row['max_abs_difference']:.3g}",
                    "" if "share_differing" not in row else f"{100 * row['share_differing']:.1f}%",
                    row["seconds"],
                ]
            )
    s = results["settings"]
    lines = [
        "# Data-parallel training: 2 gloo processes against 1 (issue 21)",
        "",
        env_line(results["env"]),
        "",
        f"lenet5 teacher trained {s['teacher_epochs']} epochs on {s['train_samples']} Fashion-MNIST images; "
        f"each recipe trains 1 epoch with global batch {s['batch']} and seed {s['seed']}; "
        f"accuracy on {s['eval_samples']} test images.",
        "",
        *md_table(
            [
                "recipe",
                "run",
                "start %",
                "test accuracy %",
                "vs 1 process (points)",
                "max abs diff, float tensors",
                "stored values that differ",
                "wall s",
            ],
            rows,
        ),
        "",
        "`1 process, 2 threads` is the same computation as `1 process` in another float summation order: its drift",
        "is the noise floor against which the 2-process drift is judged. Wall times are on 2 shared cores.",
        "",
        "Reproduce: `python benchmarks/distributed.py" + (" --quick`" if results["quick"] else "`"),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--teacher-epochs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args()
    args.train_samples = 4000 if args.quick else 12000
    args.eval_samples = 2000 if args.quick else 10000
    results = new_results(quick=args.quick, threads=1, settings={k: v for k, v in vars(args).items() if k != "out"})
    with tempfile.TemporaryDirectory(prefix="torchslim-ddp-") as tmp:
        results["sections"]["recipes"] = run(args, Path(tmp))
    stem = "distributed_quick" if args.quick else "distributed"
    write_results(args.out, stem, results, markdown(results))
    log(f"wrote {args.out / stem}.md")


if __name__ == "__main__":
    main()
