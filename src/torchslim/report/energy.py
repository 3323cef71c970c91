"""The energy section of a report: what the run cost, what each inference saves, when it pays back.

Reads ``Report.energy`` (the dict of :func:`torchslim.measure.payback.energy_section`) and returns
``(label, value)`` rows that the terminal table and the HTML page both show. How a run's figure was
obtained is written from each part's ``method`` ("rapl", "nvml" or "cpu-time"), never from a stored
free-text label, so an estimate is shown as an estimate whatever the JSON says elsewhere.
"""

from __future__ import annotations

from typing import Any

_MEASURED = {"rapl": "measured (RAPL)", "nvml": "measured (NVML)"}
ESTIMATED_CPU_TIME = "estimated (CPU time x W/core)"


def _joules(value: float) -> str:
    if abs(value) >= 1e6:
        return f"{value / 1e6:,.3f} MJ"
    if abs(value) >= 1e3:
        return f"{value / 1e3:,.3f} kJ"
    return f"{value:,.3g} J" if abs(value) < 1 else f"{value:,.1f} J"


def part_how(part: dict[str, Any]) -> str:
    """How one part of the run's energy was obtained, from its ``method``."""
    method = part.get("method")
    if method == "cpu-time":
        seconds, watts = part.get("cpu_seconds"), part.get("watts_per_core")
        if isinstance(seconds, (int, float)) and isinstance(watts, (int, float)):
            return f"{ESTIMATED_CPU_TIME}: {seconds:,.1f} core-s x {watts:g} W"
        return ESTIMATED_CPU_TIME
    label = _MEASURED.get(str(method), f"unknown method {method!r}")
    domains = part.get("domains") or []
    device = part.get("device")
    where = ", ".join(str(d) for d in domains) or (str(device) if device else "")
    return f"{label} ({where})" if where else label


def run_how(run: dict[str, Any]) -> str:
    parts = [p for p in run.get("parts") or [] if isinstance(p, dict)]
    return " + ".join(part_how(p) for p in parts) or "-"


def run_value(run: dict[str, Any]) -> str:
    joules = float(run.get("joules") or 0.0)
    text = f"{_joules(joules)} = {joules / 3600.0:,.4g} Wh"
    grams, intensity = run.get("grams_co2e"), run.get("grid_intensity")
    if isinstance(grams, (int, float)) and isinstance(intensity, (int, float)):
        text += f", {grams:,.3g} gCO2e at {intensity:g} gCO2e/kWh"
    return f"{text}; {run_how(run)}"


def payback_value(item: dict[str, Any]) -> str:
    count = item.get("inferences")
    if isinstance(count, int):
        return f"after {count:,} inferences the saving exceeds the run's energy"
    saving = item.get("saving_uj")
    return f"never: the compressed model saves no energy per inference ({saving:+,.3f} uJ)"


def energy_rows(report: Any) -> list[tuple[str, str]]:
    """``(label, value)`` rows of the energy section; empty when the report has none."""
    section = getattr(report, "energy", None) or {}
    if not isinstance(section, dict):
        return []
    rows: list[tuple[str, str]] = []
    run = section.get("run")
    if isinstance(run, dict):
        rows.append((f"energy of the run ({section.get('scope') or 'run'})", run_value(run)))
    for item in section.get("payback") or []:
        if not isinstance(item, dict):
            continue
        basis = item.get("basis", "?")
        saving = f"{item.get('saving_uj', 0.0):,.3f} uJ ({item.get('before_uj', 0.0):,.3f} -> "
        saving += f"{item.get('after_uj', 0.0):,.3f} uJ), {item.get('saving_label')}"
        rows.append((f"energy saved per inference ({basis})", saving))
        rows.append((f"payback ({basis} saving)", payback_value(item)))
    if any(isinstance(i, dict) and i.get("basis") == "estimated" for i in section.get("payback") or []):
        rows.append(
            (
                "note",
                "the estimated saving is circuit energy on the energy model's accelerator profile, not the "
                "joules a CPU or GPU draws; a measured saving is shown beside it where a counter exists",
            )
        )
    return rows


def energy_lines(report: Any) -> list[str]:
    """The energy rows as plain lines for the terminal."""
    return [f"{label}: {value}" for label, value in energy_rows(report)]
