"""The tables of ``deploy_speed.py``: where torchslim is behind a peer, markdown, plot groups, and the
published figures of peers that do not run here (with their sources)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from _harness import env_line, md_table

# Peers not run by this benchmark: their published figures, each with its source (shared/PEERS.md
# collects them). Other models than ours: not comparable row for row, shown for orientation only.
PUBLISHED: list[dict[str, str]] = [
    {
        "peer": "Intel Neural Compressor int8 (not installed here)",
        "model": "ResNet-50, ImageNet",
        "figure": "onnxruntime QDQ 2.20x at -0.22% top-1; PyTorch on Xeon 3.51x at -0.30% relative",
        "source": "Intel Neural Compressor published validated results",
    },
    {
        "peer": "DepGraph / Torch-Pruning (accuracy; it runs here for speed)",
        "model": "ResNet-56, CIFAR-10",
        "figure": "2.11x fewer MACs at -0.07 points (93.53 -> 93.46); 2.57x at +0.11 with sparse learning",
        "source": "Fang et al., DepGraph: Towards Any Structural Pruning, CVPR 2023",
    },
    {
        "peer": "NNCF int8 (accuracy; it runs here for speed)",
        "model": "ResNet-50, ImageNet",
        "figure": "top-1 76.15 -> 76.46 with int8",
        "source": "NNCF published model zoo results",
    },
    {
        "peer": "Pruna smash (cannot be installed here)",
        "model": "-",
        "figure": (
            "not measured: pruna 0.3.4 (newest) requires torchao < 0.17, and executorch 1.5.1 (the deploy extra) "
            "pins torchao 0.18.0 (`pip install --dry-run -c constraints.txt pruna`: ResolutionImpossible); "
            "no published CPU latency for these models"
        ),
        "source": "-",
    },
]

# speed-ups within this factor of each other are reported as a tie (rounds on a shared machine)
TIE = 1.02
# a faster peer's output error (1 - cosine to fp32) this many times torchslim's is named as the trade-off
FIDELITY_GAP = 1.5
# the group of torchslim rows a peer row is compared with
COMPARED_WITH = {"fp32": "int8", "int8": "int8", "pruned": "pruned"}


def _speed(row: dict[str, Any], batch: Any) -> float | None:
    cell = row.get(f"b{batch}")
    return cell.get("speedup") if isinstance(cell, dict) else None


def behind_column(rows: dict[str, dict[str, Any]], batches: Sequence[Any]) -> None:
    """Set ``behind`` on every row: for a peer, whether the best torchslim row of the group it
    competes with is slower at some batch; for a torchslim row, the faster peers of its group."""
    ours = [k for k, r in rows.items() if r.get("who") == "torchslim"]
    for name, row in rows.items():
        notes = []
        if row.get("who") == "peer" and row.get("group") in COMPARED_WITH:
            rivals = [k for k in ours if rows[k].get("group") == COMPARED_WITH[row["group"]]]
            for b in batches:
                mine = _speed(row, b)
                best = max(rivals, key=lambda k: _speed(rows[k], b) or 0.0, default=None)
                theirs = _speed(rows[best], b) if best else None
                if mine and theirs and mine > theirs * TIE:
                    notes.append(f"torchslim behind at b{b}: {best} {theirs:.2f}x < {mine:.2f}x")
                elif mine and theirs and mine > theirs:
                    notes.append(f"b{b}: tie within {TIE - 1:.0%} ({best} {theirs:.2f}x, this {mine:.2f}x)")
                elif mine and not theirs:
                    notes.append(f"b{b}: no torchslim result to compare (its row failed)")
        elif row.get("who") == "torchslim":
            peers = [k for k, r in rows.items() if r.get("who") == "peer" and r.get("group") == row.get("group")]
            for b in batches:
                mine = _speed(row, b)
                faster = [k for k in peers if mine and (_speed(rows[k], b) or 0.0) > mine * TIE]
                tied = [k for k in peers if mine and mine < (_speed(rows[k], b) or 0.0) <= mine * TIE]
                if tied and not faster:
                    notes.append(f"b{b}: tie within {TIE - 1:.0%} with {', '.join(tied)}")
                if faster:
                    top = max(faster, key=lambda k: _speed(rows[k], b) or 0.0)
                    notes.append(f"behind at b{b}: {top} {_speed(rows[top], b):.2f}x > {mine:.2f}x")
                    if row.get("graph") and rows[top].get("graph") and _graph(row) != _graph(rows[top]):
                        notes.append(f"why: graph {_graph(row)} vs {_graph(rows[top])}")
                    elif row.get("graph") and row.get("graph") == rows[top].get("graph"):
                        notes.append(
                            f"why: the same graph ({_graph(row)}) on the same runtime, so round-to-round noise"
                        )
                    elif row.get("precision") and rows[top].get("precision", row["precision"]) != row["precision"]:
                        notes.append(
                            f"why: its float operations run in {rows[top]['precision']} (the runtime's default "
                            f"here), torchslim's in {row['precision']} for parity with PyTorch"
                        )
                    elif rows[top].get("runtime") and rows[top].get("runtime") != row.get("runtime"):
                        notes.append(f"why: another runtime, {_runtime(rows[top])}")
                    ahead = [k for k in ours if rows[k].get("group") == row.get("group") and k != name]
                    best_ours = max(ahead, key=lambda k: _speed(rows[k], b) or 0.0, default=None)
                    if best_ours and (_speed(rows[best_ours], b) or 0.0) > (_speed(rows[top], b) or 0.0):
                        notes.append(f"{best_ours} is ahead ({_speed(rows[best_ours], b):.2f}x)")
                    ours_fid, theirs_fid = _fidelity(row), _fidelity(rows[top])
                    if (
                        ours_fid is not None
                        and theirs_fid is not None
                        and 1 - theirs_fid >= FIDELITY_GAP * (1 - ours_fid)
                    ):
                        notes.append(f"trade-off: its cosine to fp32 is {theirs_fid}, torchslim's {ours_fid}")
        row["behind"] = "; ".join(notes) if notes else ("-" if row.get("who") == "baseline" else "no")


def _runtime(row: dict[str, Any]) -> str:
    """The runtime, with the precision of its float operations when the row records one."""
    return f"{row['runtime']} ({row['precision']})" if row.get("precision") else str(row["runtime"])


def _fidelity(row: dict[str, Any]) -> float | None:
    """The row's cosine to the fp32 output (CNN rows: ``cosine``, MiniLM rows: ``mean_cosine``)."""
    value = row.get("cosine", row.get("mean_cosine"))
    return float(value) if isinstance(value, (int, float)) else None


def _graph(row: dict[str, Any]) -> str:
    short = {"QuantizeLinear": "Q", "DequantizeLinear": "DQ"}
    return ", ".join(f"{short.get(k, k)} {v}" for k, v in (row.get("graph") or {}).items())


def _cell(row: dict[str, Any], batch: Any) -> tuple[str, str]:
    c = row.get(f"b{batch}")
    return (f"{c['ms']:.2f}", f"{c['speedup']:.2f}x") if isinstance(c, dict) else ("", "")


def cnn_table(section: dict[str, Any], batches: Sequence[Any]) -> list[str]:
    headers = ["variant", "by", "runtime", "params", "bytes"]
    for b in batches:
        headers += [f"ms b{b}", f"speed-up b{b}"]
    headers += ["cosine", "top-1 agr.", "build s", "torchslim behind?", "onnxruntime graph"]
    body = []
    for name, row in section["rows"].items():
        if "error" in row:
            body.append([name, "", "", "", "", *[""] * 2 * len(batches), "", "", "", "", f"FAILED: {row['error']}"])
            continue
        cells = [c for b in batches for c in _cell(row, b)]
        body.append(
            [
                name,
                row["who"],
                row["runtime"],
                f"{row['params']:,}" if row.get("params") else "",
                f"{row['bytes']:,}" if row.get("bytes") else "",
                *cells,
                row.get("cosine"),
                row.get("top1_agreement"),
                row.get("build_seconds"),
                row.get("behind"),
                _graph(row),
            ]
        )
    return md_table(headers, body)


def section_batches(section: dict[str, Any]) -> list[str]:
    keys = {k[1:] for row in section["rows"].values() for k in row if k.startswith("b") and k[1:2].isdigit()}
    return sorted(keys, key=lambda k: int(k.split("x")[0]))


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"# Deployment speed ({'quick' if results['quick'] else 'full'} run)",
        "",
        env_line(results["env"]),
        "",
        "Speed-up = PyTorch fp32 eager time / variant time, median over rotating rounds in one run "
        "(`benchmarks/_harness.py`); `torchslim behind?` names every case where a peer is faster.",
    ]
    if results.get("note"):
        lines += ["", f"Note: {results['note']}"]
    if results["quick"]:
        lines += [
            "",
            "Quick run: fewer rounds and 64 calibration samples; the full run (`python benchmarks/deploy_speed.py`) "
            "adds the rows Torch-Pruning 50% (eager), OpenVINO fp32, torchao (MiniLM too), torch.nn.utils.prune.",
        ]
    titles = {"resnet56": "ResNet-56 (CIFAR-style, 3x32x32)", "resnet18": "ResNet-18 (3x32x32)"}
    for key, section in results["sections"].items():
        lines += ["", f"## {titles.get(key, 'MiniLM-L6, batch 32 x 128 tokens')}", ""]
        if "rows" not in section:
            lines += ["FAILED:", "", "```", str(section.get("error")), "```"]
            continue
        if key == "minilm":
            body = [
                [n, r["who"], _runtime(r), r.get("mean_cosine"), *_cell(r, "32x128"), r.get("behind")]
                for n, r in section["rows"].items()
            ]
            lines += md_table(["variant", "by", "runtime", "mean cosine", "ms", "speed-up", "torchslim behind?"], body)
            lines += ["", f"{section['texts']} tweets for the cosine; {section['rounds']} rounds."]
            continue
        model = section["model"]
        lines += [
            f"{model['params']:,} parameters, {model['macs'] / 1e6:.0f}M MACs per image; "
            f"{section['calibration_samples']} calibration images (random, shared by every int8 tool); "
            f"rounds {section['rounds']}.",
            "",
            *cnn_table(section, section_batches(section)),
            "",
            f"Pruned rows: {section['pruned_check']}",
        ]
    lines += ["", "## Peers not run here (published figures, other models)", ""]
    lines += md_table(["peer", "model", "figure", "source"], [list(p.values()) for p in results.get("published", [])])
    return "\n".join(lines) + "\n"


def plot_groups(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    groups: dict[str, dict[str, float]] = {}
    for key, section in results["sections"].items():
        if "rows" not in section:
            continue
        for b in section_batches(section):
            groups[f"{key}, batch {b}"] = {
                n: r[f"b{b}"]["speedup"] for n, r in section["rows"].items() if isinstance(r.get(f"b{b}"), dict)
            }
    return groups
