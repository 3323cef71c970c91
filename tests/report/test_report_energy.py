"""The report's energy section: run cost, saving per inference and payback, in the table, JSON and HTML."""

from __future__ import annotations

import json

from torchslim.measure.payback import energy_section
from torchslim.measure.run_energy import EnergyMethod, EnergyPart, RunEnergy
from torchslim.report import Report
from torchslim.report.html import render_html


def stats(energy_uj: float, measured_uj: float | None = None) -> dict[str, object]:
    return {
        "energy_uj": energy_uj,
        "energy_source": "estimate (horowitz-45nm)",
        "energy_measured_uj": measured_uj,
        "energy_measured": "measured (nvml)" if measured_uj is not None else None,
    }


def report_with(run: RunEnergy, before: dict[str, object], after: dict[str, object]) -> Report:
    section = energy_section(run, before, after, scope="compression: the recipe's steps")
    return Report(model="toy", before=before, after=after, energy=section)


def gpu_run() -> RunEnergy:
    cpu = EnergyPart(method=EnergyMethod.CPU_TIME, joules=36.0, cpu_seconds=3.0, watts_per_core=12.0)
    gpu = EnergyPart(method=EnergyMethod.NVML, joules=3564.0, device="gpu0", domains=("gpu0",))
    return RunEnergy(parts=(cpu, gpu), seconds=60.0, grid_intensity=400.0)


def test_table_shows_run_energy_saving_and_payback_for_both_bases() -> None:
    report = report_with(gpu_run(), stats(20.0, 3000.0), stats(2.0, 1200.0))
    text = report.render()
    assert "energy of the run (compression: the recipe's steps): 3.600 kJ = 1 Wh" in text
    assert "0.4 gCO2e at 400 gCO2e/kWh" in text  # 1 Wh = 1e-3 kWh x 400 g/kWh
    assert "estimated (CPU time x W/core): 3.0 core-s x 12 W + measured (NVML) (gpu0)" in text
    assert "energy saved per inference (estimated): 18.000 uJ" in text
    assert "payback (estimated saving): after 200,000,000 inferences" in text  # 3600 J / 18 µJ
    assert "energy saved per inference (measured): 1,800.000 uJ" in text
    assert "payback (measured saving): after 2,000,000 inferences" in text  # 3600 J / 1.8 mJ


def test_energy_section_survives_json_and_renders_in_html() -> None:
    report = report_with(gpu_run(), stats(20.0), stats(2.0))
    back = Report.from_dict(json.loads(report.to_json()))
    assert back.energy == report.energy
    page = render_html(back)
    assert '<table id="energy">' in page
    assert "after 200,000,000 inferences" in page and "measured (NVML)" in page


def test_a_report_without_energy_has_no_energy_section() -> None:
    report = Report(model="toy", before=stats(1.0))
    assert "energy of the run" not in report.render()
    assert 'id="energy"' not in render_html(report)
