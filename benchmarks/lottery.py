"""Lottery-ticket benchmark (issue 19, "Must show"): IMP with rewinding against its controls.

    python benchmarks/lottery.py --quick     # smoke run: small data, one seed, a few minutes on 2 cores
    python benchmarks/lottery.py             # the full run (tens of minutes on a shared 2-core machine)
    python benchmarks/lottery.py --only conv # some sections; results of the others are kept

Sections:

* ``lenet``: LeNet-300-100 on Fashion-MNIST, rewinding to initialisation, per-layer rate p (output
  layer p/2) until <= 5% of the weights remain, two seeds: the ticket's test accuracy against the
  dense run's (mean of the seeds; goal: within 0.5 points) and against random re-initialisation
  with the ticket's mask (goal: re-init at least 2 points worse) and random pruning.
* ``conv``: LeNet-5 with late rewinding (to step k of the dense run), global magnitude ranking,
  until <= 10% of the weights remain: ticket within 1 point of dense, controls worse.
* ``quantize``: the LeNet-300-100 ticket artifact (``ticket/``, sparse) then int8 quantization
  (``torchslim.compress`` with the ``quantize`` technique, and with ``quantize`` + ``entropy_code``):
  bytes on disk of the ticket, of the ticket + int8 (plain and entropy-coded), of the dense fp32
  artifact, and accuracies.
* ``resume``: ``torchslim lottery`` in a subprocess killed with SIGKILL during level 2, rerun with
  the same command; its masks of every level against an uninterrupted run with the same seed.

Compute budget: the machine has 2 cores shared by about 8 processes, so the dense run and every
level train only 2 epochs (Adam, lr 1.2e-3, batch 60) on the 54,000-image train split (the paper
trains 50k iterations; ``--quick``: 4,000 samples, 1 epoch, one seed), with a rate of 0.4 per level
instead of the paper's 0.2 (fewer levels to the same sparsity); LeNet-5 rewinds to step 200 (of
1,800). Every number is test accuracy on the full 10,000-image test set, one torch thread. The
run directories (``--work``) keep every level, so an interrupted benchmark resumes and sections
can run in parallel processes (``--only lenet --seeds 1``); each invocation merges its sections
into the results file. Writes ``benchmarks/results/lottery[_quick].json`` / ``.md`` and the
curves ``lottery[_quick]_<section>.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))
sys.path.insert(0, str(ROOT))

import torchslim as ts  # noqa: E402
from _harness import env_line, log, md_table, new_results, run_sections, write_results  # noqa: E402
from torchslim.io.weights import load_safetensors  # noqa: E402
from torchslim.lottery import curve_png  # noqa: E402
from torchslim.measure.accuracy import evaluate  # noqa: E402

RESULTS = ROOT / "results"


def splits(args: argparse.Namespace, seed: int) -> Any:
    return ts.data.load_splits("fashion-mnist", batch_size=60, train_samples=args.train_samples, seed=seed)


def artifact_bytes(directory: Path) -> int:
    """Bytes of the model files of an artifact (weights + manifest)."""
    return sum((directory / name).stat().st_size for name in ("model.safetensors", "torchslim.json"))


def summary(result: Any) -> dict[str, Any]:
    last = result.records[-1]
    return {
        "dense": result.dense_accuracy,
        "ticket": result.ticket_accuracy,
        "reinit": last.get("reinit", {}).get("accuracy"),
        "random": last.get("random", {}).get("accuracy"),
        "weights_remaining": result.weights_remaining,
        "curves": result.curves(),
        "seconds": sum(r[b]["seconds"] for r in result.records for b in ("ticket", "reinit", "random") if b in r),
    }


def run_ticket(args: argparse.Namespace, name: str, seed: int, **options: Any) -> Any:
    out = Path(args.work) / f"{name}-seed{seed}"
    model = ts.models.build_model(name, seed=seed)
    log(f"{name} seed {seed}: {options}")
    return ts.lottery(
        model,
        splits(args, seed),
        seed=seed,
        out=out,
        threads=1,
        on_level=lambda r: log(
            f"  level {r['level']}: {100 * r['weights_remaining']:.2f}% left, "
            + ", ".join(f"{b} {100 * r[b]['accuracy']:.2f}" for b in ("ticket", "reinit", "random") if b in r)
        ),
        **options,
    )


def plot(args: argparse.Namespace, section: str, result: Any) -> str:
    png = curve_png(result.records, title=f"{section}: {result.title}")
    path = RESULTS / f"{args.stem}_{section}.png"
    if png is not None:
        from torchslim.io.atomic import write_bytes

        write_bytes(path, png)
    return path.name


def section_lenet(args: argparse.Namespace) -> dict[str, Any]:
    train = {"epochs": args.epochs, "lr": 1.2e-3}
    runs = {}
    for seed in args.seeds:
        result = run_ticket(args, "lenet-300-100", seed, levels=args.lenet_levels, rate=args.rate, train=train)
        runs[seed] = summary(result)
        if seed == args.seeds[0]:
            runs[seed]["plot"] = plot(args, "lenet", result)
    mean = {k: statistics.mean(r[k] for r in runs.values()) for k in ("dense", "ticket", "reinit", "random")}
    return {
        "model": "lenet-300-100",
        "setup": {"rate": args.rate, "scope": "layer", "output_rate": args.rate / 2, "rewind": "0", **train},
        "seeds": runs,
        "mean": mean,
        "weights_remaining": statistics.mean(r["weights_remaining"] for r in runs.values()),
        "ticket_minus_dense_pts": 100 * (mean["ticket"] - mean["dense"]),
        "reinit_minus_ticket_pts": 100 * (mean["reinit"] - mean["ticket"]),
        "goal_ticket_within_0.5": abs(100 * (mean["ticket"] - mean["dense"])) <= 0.5 or mean["ticket"] > mean["dense"],
        "goal_reinit_2_worse": 100 * (mean["ticket"] - mean["reinit"]) >= 2.0,
    }


def section_conv(args: argparse.Namespace) -> dict[str, Any]:
    train = {"epochs": args.epochs, "lr": 1.2e-3}
    options = {"levels": args.conv_levels, "rate": args.rate, "scope": "global", "rewind": args.conv_rewind}
    result = run_ticket(args, "lenet5", args.seeds[0], train=train, **options)
    out = summary(result)
    return {
        "model": "lenet5",
        "setup": {**options, "output_rate": args.rate / 2, **train},
        **out,
        "plot": plot(args, "conv", result),
        "ticket_minus_dense_pts": 100 * (out["ticket"] - out["dense"]),
        "goal_ticket_within_1": out["ticket"] >= out["dense"] - 0.01,
        "goal_controls_worse": all(out[c] is not None and out[c] < out["ticket"] for c in ("reinit", "random")),
    }


def section_quantize(args: argparse.Namespace) -> dict[str, Any]:
    seed = args.seeds[0]
    run_dir = Path(args.work) / f"lenet-300-100-seed{seed}"
    if not (run_dir / "ticket").is_dir():
        raise RuntimeError(f"run the lenet section first: {run_dir / 'ticket'} is missing")
    data = splits(args, seed)
    ticket = ts.load(run_dir / "ticket")
    dense = ts.models.build_model("lenet-300-100", seed=seed)
    dense.load_state_dict(load_safetensors(run_dir / "level_00" / "ticket.safetensors"))
    with tempfile.TemporaryDirectory() as tmp:
        dense_dir = ts.save(dense, Path(tmp) / "dense")
        recipe = ts.Recipe([ts.Step(ts.quantization.Quantize())])
        result = ts.compress(ticket, data, recipe=recipe, repeats=1, quiet=True, runtime="pytorch")
        result.save(Path(tmp) / "int8")
        coded_recipe = ts.Recipe([ts.Step(ts.quantization.Quantize()), ts.Step(ts.quantization.EntropyCode())])
        coded = ts.compress(ticket, data, recipe=coded_recipe, repeats=1, quiet=True, runtime="pytorch")
        coded.save(Path(tmp) / "int8-entropy")
        sizes = {
            "dense_fp32": artifact_bytes(dense_dir),
            "ticket_sparse_fp32": artifact_bytes(run_dir / "ticket"),
            "ticket_int8": artifact_bytes(Path(tmp) / "int8"),
            "ticket_int8_entropy_coded": artifact_bytes(Path(tmp) / "int8-entropy"),
        }
        reloaded = ts.load(Path(tmp) / "int8")
        coded_reloaded = ts.load(Path(tmp) / "int8-entropy")
    accuracy = {
        "dense_fp32": evaluate(dense, data.test).accuracy,
        "ticket_sparse_fp32": evaluate(ticket, data.test).accuracy,
        "ticket_int8": evaluate(result.model, data.test).accuracy,
        "ticket_int8_reloaded": evaluate(reloaded, data.test).accuracy,
        "ticket_int8_entropy_coded": evaluate(coded_reloaded, data.test).accuracy,
    }
    return {
        "bytes": sizes,
        "ratio_vs_dense": {k: sizes["dense_fp32"] / v for k, v in sizes.items()},
        "accuracy": accuracy,
        "nonzero_params_after": result.report.after.get("nonzero_params"),
        "params": result.report.before.get("params"),
    }


def _cli(out: Path, args: argparse.Namespace) -> list[str]:
    return [
        sys.executable, "-m", "torchslim", "lottery", "lenet-300-100", "--data", "fashion-mnist",
        "--levels", "3", "--rate", "0.4", "--rewind", "10it", "--train-samples", str(args.resume_samples),
        "--eval-samples", "1000", "--epochs", "2", "--train-batch-size", "60", "--threads", "1", "--quiet",
        "--out", str(out),
    ]  # fmt: skip


def _masks(out: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for level in (1, 2, 3):
        for key, value in load_safetensors(out / f"level_{level:02d}" / "masks.safetensors").items():
            tensors[f"{level}/{key}"] = value
    return tensors


def section_resume(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work)
    whole, killed = work / "resume-whole", work / "resume-killed"
    for d in (whole, killed):
        shutil.rmtree(d, ignore_errors=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(_cli(whole, args), check=True, env=env, capture_output=True)
    proc = subprocess.Popen(_cli(killed, args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = killed / "checkpoints" / "level_02"
    while not marker.exists() and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(args.kill_delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = sorted(p.parent.name for p in killed.glob("level_*/metrics.json"))
    rerun = subprocess.run(_cli(killed, args), check=True, env=env, capture_output=True, text=True)
    a, b = _masks(whole), _masks(killed)
    same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    return {
        "killed_during": "level_02" if "level_02" not in {d for d in done_before} else "after level_02",
        "levels_complete_when_killed": done_before,
        "rerun_said": [line for line in rerun.stdout.splitlines() if line.startswith("resumed")],
        "masks_identical": same,
        "mask_tensors_compared": len(a),
    }


SECTIONS = {"lenet": section_lenet, "conv": section_conv, "quantize": section_quantize, "resume": section_resume}


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


BRANCH_KEYS = ("dense", "ticket", "reinit", "random")


def md_lenet(r: dict[str, Any]) -> list[str]:
    lines = ["## LeNet-300-100, Fashion-MNIST, rewind to init", "", f"setup: {r['setup']}", ""]
    rows = [[seed, pct(v["weights_remaining"]), *(pct(v[k]) for k in BRANCH_KEYS)] for seed, v in r["seeds"].items()]
    rows.append(["mean", pct(r["weights_remaining"]), *(pct(r["mean"][k]) for k in BRANCH_KEYS)])
    lines += md_table(["seed", "weights left %", "dense %", "ticket %", "reinit %", "random %"], rows)
    lines += [
        "",
        f"ticket - dense: {r['ticket_minus_dense_pts']:+.2f} pts (goal: not more than 0.5 below dense: "
        f"{r['goal_ticket_within_0.5']}); reinit - ticket: {r['reinit_minus_ticket_pts']:+.2f} pts (goal <= -2: "
        f"{r['goal_reinit_2_worse']}); reinit - dense: {100 * (r['mean']['reinit'] - r['mean']['dense']):+.2f} pts",
        "",
    ]
    first = next(iter(r["seeds"].values()))
    return [*lines, f"![lenet curve]({first.get('plot', '')})", ""]


def md_conv(r: dict[str, Any]) -> list[str]:
    lines = ["## LeNet-5, late rewinding, global ranking", "", f"setup: {r['setup']}", ""]
    row = [pct(r["weights_remaining"]), *(pct(r[k]) for k in BRANCH_KEYS)]
    lines += md_table(["weights left %", "dense %", "ticket %", "reinit %", "random %"], [row])
    verdict = f"goal: not more than 1 below dense: {r['goal_ticket_within_1']}; "
    verdict += f"controls worse: {r['goal_controls_worse']}"
    gap = f"ticket - dense: {r['ticket_minus_dense_pts']:+.2f} pts ({verdict})"
    return [*lines, "", gap, "", f"![conv curve]({r['plot']})", ""]


def md_quantize(r: dict[str, Any]) -> list[str]:
    lines = ["## Ticket then int8 quantization (LeNet-300-100, seed 0)", ""]
    rows = [[k, f"{v:,}", f"{r['ratio_vs_dense'][k]:.2f}", pct(r["accuracy"][k])] for k, v in r["bytes"].items()]
    lines += md_table(["model", "bytes on disk", "x smaller than dense fp32", "test accuracy %"], rows)
    note = (
        "The int8 artifact keeps the ticket's zeros (nonzero params after: "
        f"{r['nonzero_params_after']:,} of {r['params']:,}) but stores dense int8 codes: the quantized layers do not "
        "use the sparse codecs, so ticket + int8 is larger on disk than the sparse fp32 ticket. Adding the "
        "`entropy_code` step (ANS-coded codes, zero runs as gaps) stores the sparse int8 codes compactly; its "
        "accuracy is measured on the artifact reloaded from disk."
    )
    return [*lines, "", f"int8 artifact reloaded: {pct(r['accuracy']['ticket_int8_reloaded'])}%", "", note, ""]


def md_resume(r: dict[str, Any]) -> list[str]:
    return [
        "## Kill and resume (SIGKILL during level 2, then the same command again)",
        "",
        f"levels complete when killed: {r['levels_complete_when_killed']}; rerun: {r['rerun_said']}; "
        f"masks identical to the uninterrupted run ({r['mask_tensors_compared']} tensors): {r['masks_identical']}",
        "",
    ]


WRITERS = {"lenet": ("mean", md_lenet), "conv": ("dense", md_conv), "quantize": ("bytes", md_quantize)}
WRITERS["resume"] = ("masks_identical", md_resume)


def markdown(results: dict[str, Any]) -> str:
    lines = [f"# Lottery tickets ({'quick' if results['quick'] else 'full'} run)", "", env_line(results["env"]), ""]
    lines += [f"Command: `{results['command']}`", ""]
    for name, r in results["sections"].items():
        key, writer = WRITERS[name]
        if key in r:
            lines += writer(r)
        elif "error" in r:
            lines += [f"section {name} failed: {r['error']}", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default=",".join(SECTIONS))
    parser.add_argument(
        "--work", default=None, help="Run directories (default: ~/.cache/torchslim/benchmarks/lottery)."
    )
    parser.add_argument("--seeds", default=None, help="Comma-separated seeds of the lenet section (default 0,1).")
    parser.add_argument("--train-samples", type=int, default=None, help="Training subset per level.")
    args = parser.parse_args()
    torch.set_num_threads(1)
    quick = args.quick
    args.stem = "lottery_quick" if quick else "lottery"
    args.seeds = [int(v) for v in args.seeds.split(",")] if args.seeds else ([0] if quick else [0, 1])
    args.train_samples = args.train_samples or (4000 if quick else None)
    args.epochs = 1 if quick else 2
    args.rate = 0.4
    args.lenet_levels = 6  # 0.6^6 of the hidden layers, 0.8^6 of the output layer: 4.75% of the weights
    args.conv_levels = 3 if quick else 5  # global: 0.6^5 of the pool, about 8% of the weights
    args.conv_rewind = "20it" if quick else "200it"
    args.resume_samples = 1200
    args.kill_delay = 0.5
    cache = Path(os.environ.get("TORCHSLIM_CACHE") or "~/.cache/torchslim").expanduser()
    args.work = args.work or str(cache / "benchmarks" / args.stem)
    path = RESULTS / f"{args.stem}.json"
    fresh = new_results(quick=quick, threads=1)
    fresh["command"] = "python benchmarks/lottery.py" + (" --quick" if quick else "") + f" --only {args.only}"
    done = run_sections(args.only, SECTIONS, lambda fn: fn(args), error=parser.error)
    # sections run by other invocations (read now: they may have finished meanwhile) are kept
    fresh["sections"] = json.loads(path.read_text()).get("sections", {}) if path.is_file() else {}
    fresh["sections"].update(done)
    write_results(RESULTS, args.stem, fresh, markdown(fresh))
    log(f"wrote {RESULTS / args.stem}.json / .md")


if __name__ == "__main__":
    main()
