"""What every benchmark script shares, so all of them time, label and write results the same way.

* :func:`environment`: the header every results file carries (date, machine, versions of torch,
  onnxruntime and every peer, the torchslim git commit), and :func:`new_results` around it.
* :func:`rotating_times` / :func:`rotating_latency`: every variant timed in the same rounds in
  rotating order, each after untimed calls that let the previous runtime's threads go quiet;
  medians of each variant's milliseconds and the median over rounds of ``variant_ms / baseline_ms``
  within the round (load from other processes cancels out).
* :func:`torch_fn`, :func:`ort_session`, :func:`ort_fn`: the callables that are timed.
* :func:`run_sections`: the chosen sections, one failing section does not hide the others.
* :func:`write_results`: ``<stem>.json`` + ``<stem>.md`` atomically; :func:`bar_plot` a PNG beside them.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import subprocess
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# distribution name -> key in the header's "versions" (peers first, then what they run on)
VERSIONED = {
    "torch": "torch",
    "onnxruntime": "onnxruntime",
    "onnx": "onnx",
    "onnxscript": "onnxscript",
    "torchao": "torchao",
    "torch-pruning": "torch_pruning",
    "nncf": "nncf",
    "openvino": "openvino",
    "coremltools": "coremltools",
    "brevitas": "brevitas",
    "transformers": "transformers",
    "numpy": "numpy",
}
HEADER_FIELDS = ("date", "machine", "versions", "threads")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------------------------
# the header


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "avx_vnni")
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in wanted if f in have]
    except OSError:
        pass
    return []


def git_commit() -> str | None:
    """The checkout's commit, with ``+dirty`` when tracked files differ from it (None outside git)."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha + ("+dirty" if dirty else "")


def versions() -> dict[str, str | None]:
    """Installed versions of torch, onnxruntime and every peer (None: not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist, key in VERSIONED.items():
        try:
            out[key] = version(dist)
        except PackageNotFoundError:
            out[key] = None
    out["torchslim_commit"] = git_commit()
    return out


def load_average() -> list[float] | None:
    """The machine's 1, 5 and 15 minute load averages (a load above the core count means other
    processes shared the cores during the timing rounds)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def environment(*, threads: int | None = None) -> dict[str, Any]:
    """The header of a results file: date (UTC), machine (cpu model, cores), versions, threads.

    The flat keys ``torch``, ``onnxruntime``, ``cpus``, ``python`` are kept for the scripts'
    markdown writers (older results files have only those)."""
    ver = versions()
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {
            "cpu": _cpu_model(),
            "cores": cores,
            "usable_cores": usable,
            "cpu_flags": _cpu_flags(),
            "platform": platform.platform(),
        },
        "versions": ver,
        "threads": threads,
        "load_average": load_average(),
        "torch": ver["torch"],
        "onnxruntime": ver["onnxruntime"],
        "torchao": ver["torchao"],
        "torch_pruning": ver["torch_pruning"],
        "cpus": cores,
        "python": ver["python"],
    }


def new_results(*, quick: bool, threads: int, **extra: Any) -> dict[str, Any]:
    """The skeleton every script fills: ``quick``, ``env`` (the header), ``sections``, extras."""
    return {"quick": quick, "env": environment(threads=threads), **extra, "sections": {}}


def env_line(env: Mapping[str, Any]) -> str:
    """One markdown line naming the date, machine, load and versions of a results file."""
    machine = env.get("machine") or {}
    ver = env.get("versions") or {k: env.get(k) for k in ("torch", "onnxruntime", "torchao", "torch_pruning")}
    parts = [str(env.get("date", "?"))]
    if machine:
        parts.append(f"{machine.get('cpu', '?')}, {machine.get('cores', env.get('cpus', '?'))} cores")
    if env.get("load_average"):
        parts.append(f"load average {env['load_average'][0]} at the start")
    parts.append(f"{env.get('threads', '?')} threads")
    parts.append(", ".join(f"{k} {v}" for k, v in ver.items() if v and k not in ("python", "torchslim_commit")))
    commit = ver.get("torchslim_commit")
    if commit:
        parts.append(f"torchslim {commit[:12]}{' (uncommitted changes)' if commit.endswith('+dirty') else ''}")
    return "; ".join(parts)


# ------------------------------------------------------------------------------------------------
# timing


SETTLE_MS = 20.0
"""Untimed calls a variant gets right before its timed call in every round, until they add up to this
many milliseconds (none for a variant whose call already takes longer). Measured
(docs/deploy.md, "Timing"): after PyTorch eager, whose OpenMP
threads keep spinning for a few milliseconds, a 0.5 ms ExecuTorch call at batch 1 took 2.1 ms, and
two warm-up calls were not enough; a deployment calls one runtime again and again, so the timed
call is the steady state a deployed model runs at."""


def rotating_times(
    fns: Mapping[str, Callable[[], Any]], *, rounds: int, threads: int, settle_ms: float = SETTLE_MS
) -> dict[str, list[float]]:
    """Milliseconds of every callable in each of `rounds` rounds; the order rotates every round (so
    no callable always runs first) after two warm-up calls each, with `threads` torch threads. In a
    round each callable first runs untimed until `settle_ms` have passed (as many calls as its
    previous timed call fits into that time, none when that call took longer), then once timed."""
    from torchslim.measure import num_threads

    names = list(fns)
    times: dict[str, list[float]] = {k: [] for k in names}
    last: dict[str, float] = {}
    with num_threads(threads):
        for name, fn in fns.items():
            fn()
            start = time.perf_counter_ns()
            fn()
            last[name] = (time.perf_counter_ns() - start) / 1e6
        for r in range(rounds):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                for _ in range(_settle_calls(last[name], settle_ms)):
                    fns[name]()
                start = time.perf_counter_ns()
                fns[name]()
                last[name] = (time.perf_counter_ns() - start) / 1e6
                times[name].append(last[name])
    return times


def _settle_calls(call_ms: float, settle_ms: float) -> int:
    """Untimed calls of `call_ms` each that fill `settle_ms` (0 when one call takes longer; at most 200)."""
    if settle_ms <= 0 or call_ms >= settle_ms:
        return 0
    return min(200, math.ceil(settle_ms / max(call_ms, 1e-3)))


def summarize(times: Mapping[str, Sequence[float]], baseline: str) -> dict[str, dict[str, float]]:
    """Per callable: median ``ms``, ``ratio`` = median over rounds of ``ms / baseline ms`` in the same
    round, and ``speedup`` = 1 / ratio (how many times faster than the baseline)."""
    out = {}
    for name, values in times.items():
        ratios = [a / b for a, b in zip(values, times[baseline], strict=True)]
        ratio = statistics.median(ratios)
        out[name] = {
            "ms": round(statistics.median(values), 3),
            "ratio": round(ratio, 4),
            "speedup": round(1.0 / ratio, 3),
        }
    return out


def rotating_latency(
    fns: Mapping[str, Callable[[], Any]],
    baseline: str,
    *,
    rounds: int,
    threads: int,
    settle_ms: float = SETTLE_MS,
) -> dict[str, dict[str, float]]:
    """:func:`rotating_times` then :func:`summarize` against `baseline` (one of `fns`)."""
    if baseline not in fns:
        raise KeyError(f"baseline {baseline!r} is not one of {list(fns)}")
    return summarize(rotating_times(fns, rounds=rounds, threads=threads, settle_ms=settle_ms), baseline)


def torch_fn(model: Any, inputs: Any) -> Callable[[], Any]:
    """A call of `model` on `inputs` (keyword arguments when a mapping) without autograd."""
    import torch

    def run() -> Any:
        with torch.no_grad():
            return model(**inputs) if isinstance(inputs, Mapping) else model(inputs)

    return run


def ort_session(path: Path, threads: int) -> Any:
    """An onnxruntime session whose idle threads do not spin (sessions take turns on few cores; a
    spinning session steals the next one's cores)."""
    from torchslim.deploy import ort_session as make

    return make(path, threads=threads, spinning=False)


def ort_fn(session: Any, feeds: dict[str, Any]) -> Callable[[], Any]:
    return lambda: session.run(None, feeds)


# ------------------------------------------------------------------------------------------------
# sections and output


def run_sections(
    only: str,
    sections: Mapping[str, Callable[..., dict[str, Any]]],
    run: Callable[[Callable[..., dict[str, Any]]], dict[str, Any]],
    *,
    error: Callable[[str], Any],
) -> dict[str, Any]:
    """Run the comma-separated `only` sections via ``run(section_fn)``; each result gets ``seconds``."""
    out: dict[str, Any] = {}
    for name in [n.strip() for n in only.split(",") if n.strip()]:
        if name not in sections:
            error(f"unknown section {name!r}; known: {list(sections)}")
        log(f"section {name} ...")
        t0 = time.perf_counter()
        try:
            out[name] = run(sections[name])
        except Exception as exc:  # noqa: BLE001 - one failing section must not hide the others
            traceback.print_exc()
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
        out[name]["seconds"] = time.perf_counter() - t0
        out[name]["load_average_after"] = load_average()
        log(f"section {name} done in {out[name]['seconds']:.0f}s")
    return out


def write_results(out: Path, stem: str, results: dict[str, Any], markdown: str) -> None:
    """``out/<stem>.json`` and ``out/<stem>.md``, atomically; a results dict without the header gets it."""
    from torchslim.io.atomic import write_json, write_text

    if "env" not in results or "versions" not in results["env"]:
        results["env"] = {**environment(threads=results.get("env", {}).get("threads")), **results.get("env", {})}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{stem}.json", results)
    write_text(out / f"{stem}.md", markdown)


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Markdown table lines (cells str()-ed, ``|`` escaped)."""

    def cell(v: Any) -> str:
        return "" if v is None else " ".join(str(v).replace("|", "/").split())

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def bar_plot(
    path: Path,
    title: str,
    groups: Mapping[str, Mapping[str, float]],
    *,
    xlabel: str,
    reference: float | None = 1.0,
) -> Path | None:
    """Horizontal bars: one panel per group (e.g. model and batch), one bar per variant; a dashed
    line at `reference` (None: none). Written atomically as PNG; None when matplotlib is missing or
    there is nothing."""
    groups = {g: v for g, v in groups.items() if v}
    if not groups:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    height = sum(max(1.5, 0.32 * len(v) + 0.8) for v in groups.values())
    fig, axes = plt.subplots(len(groups), 1, figsize=(9, height), squeeze=False)
    for ax, (group, values) in zip(axes[:, 0], groups.items(), strict=True):
        names = list(values)[::-1]
        vals = [values[n] for n in names]
        colors = ["tab:orange" if n.startswith("torchslim") else "tab:blue" for n in names]
        ax.barh(names, vals, color=colors)
        if reference is not None:
            ax.axvline(reference, color="gray", linestyle="--", linewidth=0.8)
        for y, v in enumerate(vals):
            ax.text(v, y, f" {v:.2f}", va="center", fontsize=8)
        ax.set_title(group, fontsize=10)
        ax.tick_params(axis="y", labelsize=8)
    axes[-1, 0].set_xlabel(xlabel)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)
    return path
