"""What every benchmark script shares: timestamped logging, running the chosen sections (one
failing section does not hide the others), and writing ``<stem>.json`` + ``<stem>.md`` atomically."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


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
        log(f"section {name} done in {out[name]['seconds']:.0f}s")
    return out


def rotating_times(fns: Mapping[str, Callable[[], Any]], *, rounds: int, threads: int) -> dict[str, list[float]]:
    """Milliseconds of every callable in each of `rounds` rounds; the order rotates every round (so
    no callable always runs first) after two warm-up calls each, with `threads` torch threads."""
    from torchslim.measure import num_threads

    names = list(fns)
    times: dict[str, list[float]] = {k: [] for k in names}
    with num_threads(threads):
        for fn in fns.values():
            fn()
            fn()
        for r in range(rounds):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                start = time.perf_counter_ns()
                fns[name]()
                times[name].append((time.perf_counter_ns() - start) / 1e6)
    return times


def write_results(out: Path, stem: str, results: dict[str, Any], markdown: str) -> None:
    from torchslim.io.atomic import write_json, write_text

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{stem}.json", results)
    write_text(out / f"{stem}.md", markdown)
