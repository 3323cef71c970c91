"""Print the README's measured-results tables, generated from ``benchmarks/results/*.json``.

    python scripts/readme_tables.py            # full runs (deploy_speed.json, quantization.json, ...)
    python scripts/readme_tables.py --quick    # the `make bench-quick` files (*_quick.json)
    python scripts/readme_tables.py --results DIR --only deploy_speed,pruning

Every table is preceded by the line naming its source file, date, machine and versions (the header
each benchmark writes through ``benchmarks/_harness.py``), so no figure in the README is typed by
hand. Figures are printed as measured (rounded for display only).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    def cell(v: Any) -> str:
        if isinstance(v, int) and not isinstance(v, bool):
            return f"{v:,}"
        return "" if v is None else " ".join(str(v).replace("|", "/").split())

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]


def source_line(path: Path, data: Mapping[str, Any]) -> str:
    """``Source: <file>, <date>; <cpu>, <cores> cores; <threads> threads; torch ..., torchslim <commit>``."""
    env = data.get("env") or {}
    machine = env.get("machine") or {}
    ver = env.get("versions") or {k: env.get(k) for k in ("torch", "onnxruntime", "torchao", "torch_pruning")}
    tools = ", ".join(f"{k} {v}" for k, v in ver.items() if v and k not in ("python", "torchslim_commit"))
    where = f"{machine['cpu']}, {machine.get('cores')} cores" if machine.get("cpu") else f"{env.get('cpus', '?')} CPUs"
    if env.get("load_average"):
        where += f" (load average {env['load_average'][0]} at the start)"
    commit = ver.get("torchslim_commit")
    parts = [f"`benchmarks/results/{path.name}`", str(env.get("date", "date not recorded")), where]
    parts.append(f"{env.get('threads', '?')} threads")
    if tools:
        parts.append(tools)
    if commit:
        parts.append(f"torchslim {commit[:12]}{' (uncommitted changes)' if commit.endswith('+dirty') else ''}")
    return "Source: " + "; ".join(parts) + "."


def _x(value: Any) -> str:
    return f"{value:.2f}x" if isinstance(value, (int, float)) else ""


def _speed(row: Mapping[str, Any], key: str) -> str:
    cell = row.get(key)
    return _x(cell.get("speedup")) if isinstance(cell, Mapping) else ""


def _runtime(row: Mapping[str, Any]) -> str:
    """The runtime, with the precision of its float operations when the row records one."""
    return f"{row.get('runtime')} ({row['precision']})" if row.get("precision") else str(row.get("runtime"))


def deploy_speed(data: Mapping[str, Any]) -> list[str]:
    """ResNet-56 / ResNet-18: speed-up over PyTorch fp32 eager per batch; MiniLM-L6 at 32 x 128."""
    out: list[str] = []
    for key, section in data.get("sections", {}).items():
        rows = section.get("rows") if isinstance(section, Mapping) else None
        if not rows:
            out += [f"Section `{key}` failed: {section.get('error') if isinstance(section, Mapping) else section}", ""]
            continue
        if key == "minilm":
            out += [f"MiniLM-L6, batch 32 x 128 tokens ({section.get('texts')} tweets for the cosine):", ""]
            out += table(
                ["variant", "runtime", "speed-up vs PyTorch fp32 eager", "mean cosine", "torchslim behind?"],
                [
                    [n, _runtime(r), _speed(r, "b32x128"), r.get("mean_cosine"), r.get("behind")]
                    for n, r in rows.items()
                ],
            )
            out.append("")
            continue
        batches = sorted(
            {k for r in rows.values() for k in r if k.startswith("b") and k[1:].isdigit()}, key=lambda k: int(k[1:])
        )
        model = section.get("model", {})
        out += [f"{key} ({model.get('params', 0):,} parameters), speed-up over PyTorch fp32 eager:", ""]
        body = []
        for name, r in rows.items():
            if "error" in r:
                body.append([name, "", *[""] * len(batches), "", f"failed: {r['error'][:80]}"])
                continue
            body.append([name, r.get("runtime"), *[_speed(r, b) for b in batches], r.get("cosine"), r.get("behind")])
        out += table(
            ["variant", "runtime", *[f"batch {b[1:]}" for b in batches], "output cosine", "torchslim behind?"], body
        )
        out.append("")
    for p in data.get("published", []):
        out.append(f"- not run here: {p['peer']}, {p['model']}: {p['figure']} ({p['source']})")
    return out


def quantization(data: Mapping[str, Any]) -> list[str]:
    """fmnist-cnn int8 variants (accuracy, bytes, latency vs onnxruntime fp32) and MiniLM-L6 rows."""
    out: list[str] = []
    sections = data.get("sections", {})
    fm = sections.get("fmnist", {})
    if "variants" in fm:
        out += ["fmnist-cnn on Fashion-MNIST:", ""]
        out += table(
            ["variant", "test acc", "bytes", "latency vs onnxruntime fp32, batch 64"],
            [
                [
                    n,
                    f"{100 * r['acc']:.2f}%" if "acc" in r else r.get("note"),
                    r.get("bytes"),
                    _x(r.get("vs_ort_fp32_b64")),
                ]
                for n, r in fm["variants"].items()
            ],
        )
        out.append("")
    ml = sections.get("minilm", {})
    if "rows" in ml:
        out += [f"MiniLM-L6 ({ml.get('texts')} tweets):", ""]
        out += table(
            ["variant", "mean cosine to fp32", "pair cosine"],
            [[n, r.get("mean_cosine", r.get("note")), r.get("pair_cosine")] for n, r in ml["rows"].items()],
        )
        out.append("")
    return out


def pruning(data: Mapping[str, Any]) -> list[str]:
    """Per model: accuracy, params, MACs ratio, artifact bytes, latency ratio vs dense."""
    out: list[str] = []
    for key, section in data.get("sections", {}).items():
        rows = section.get("rows") if isinstance(section, Mapping) else None
        if not isinstance(rows, Mapping):
            continue
        body = []
        for name, r in rows.items():
            lat = r.get("latency") if isinstance(r.get("latency"), Mapping) else {}
            acc = r.get("accuracy")
            body.append(
                [
                    name,
                    f"{100 * acc:.2f}%" if isinstance(acc, float) else acc,
                    r.get("params"),
                    _x(r.get("mac_ratio")),
                    r.get("artifact_bytes"),
                    _x(lat.get("ratio")),
                ]
            )
        out += [f"{key}:", ""]
        out += table(["variant", "test acc", "params", "MACs", "artifact bytes", "latency vs dense"], body)
        out.append("")
    return out


def _backend_cell(facts: Mapping[str, Any]) -> str:
    lat, base = facts.get("latency"), facts.get("baseline_latency")
    if not lat:
        return "not run" if facts.get("available") else "not installed"
    text = f"{lat['median_ms']:.3f} ms"
    if base:
        text += f" ({base['median_ms'] / lat['median_ms']:.2f}x of its fp32)"
    if not facts.get("parity_ok"):
        return text + ", parity failed"
    return text + (", parity: close" if (facts.get("parity") or {}).get("close") else "")


def backends(data: Mapping[str, Any]) -> list[str]:
    """torchslim int8 per runtime (ms, speed-up over the fp32 model on that runtime), the pick, parity."""
    names = ("onnxruntime", "openvino", "executorch")
    body, parity = [], []
    for key, section in data.get("sections", {}).items():
        if not isinstance(section, Mapping) or "settings" not in section:
            body.append([key, "", "", f"failed: {section.get('error') if isinstance(section, Mapping) else section}"])
            continue
        for row in section["settings"]:
            by_name = {b["name"]: b for b in row["backends"]}
            cells = [_backend_cell(by_name[n]) if n in by_name else "" for n in names]
            body.append([key, row["batch"], row["threads"], *cells, row.get("picked")])
        for name, p in section.get("held_out_parity", {}).items():
            if "max_steps" in p:
                verdict = f", {p['verdict']}" if p.get("verdict") else ""
                parity.append(f"{key} on {name}: max {p['max_steps']:.2f} / p99 {p['p99_steps']:.2f} steps{verdict}")
    out = table(["model", "batch", "threads", *names, "picked (parity passed, fastest)"], body)
    if parity:
        out += [
            "",
            "Runtime output vs torchslim's simulation on 8 inputs (steps of the output range / 255; "
            "parity: <= 2, or close in cosine, offset, scale and top-1): " + "; ".join(parity) + ".",
        ]
    return out


def checks(data: Mapping[str, Any]) -> list[str]:
    """Any results file: its must-show checks (top level or per section)."""
    found: list[list[Any]] = []
    for c in data.get("checks", []) or []:
        if isinstance(c, Mapping):
            found.append(["", c.get("claim"), c.get("measured"), c.get("ok")])
    for key, section in data.get("sections", {}).items():
        if not isinstance(section, Mapping):
            continue
        goals = section.get("checks") or section.get("goals")
        if isinstance(goals, Mapping):
            found += [[key, k, "", v] for k, v in goals.items()]
    return table(["section", "check", "measured", "met"], found) if found else []


RENDERERS: dict[str, Callable[[Mapping[str, Any]], list[str]]] = {
    "deploy_speed": deploy_speed,
    "backends": backends,
    "quantization": quantization,
    "pruning": pruning,
    "distillation": checks,
}


def render(results: Path, *, quick: bool, only: Sequence[str] | None = None) -> str:
    """Markdown of every known benchmark's results file found in `results`."""
    lines: list[str] = []
    for stem, fn in RENDERERS.items():
        if only and stem not in only:
            continue
        path = results / f"{stem}{'_quick' if quick else ''}.json"
        if not path.is_file():
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        lines += [f"### {stem.replace('_', ' ').capitalize()}{' (quick run)' if data.get('quick') else ''}", ""]
        lines += [source_line(path, data), ""]
        body = fn(data)
        lines += (body or checks(data) or ["(no table in this file)"]) + [""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="render the *_quick.json files of make bench-quick")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {list(RENDERERS)}")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    text = render(args.results, quick=args.quick, only=only or None)
    if not text.strip():
        print(f"no results files in {args.results}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
