"""Payback arithmetic, and a compression report that shows the run's energy, the saving and the count."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from torchslim.api import compress
from torchslim.core.errors import ConfigError
from torchslim.core.recipe import Recipe
from torchslim.measure.payback import energy_section, payback_inferences, paybacks_from_stats
from torchslim.measure.run_energy import EnergyMethod, EnergyPart, RunEnergy
from torchslim.report import Report
from torchslim.report.energy import energy_lines
from torchslim.report.html import render_html


def estimated_run(joules: float) -> RunEnergy:
    part = EnergyPart(method=EnergyMethod.CPU_TIME, joules=joules, cpu_seconds=joules / 12.0, watts_per_core=12.0)
    return RunEnergy(parts=(part,), seconds=1.0)


def test_payback_count_is_the_smallest_number_of_inferences_that_earns_the_run_back() -> None:
    assert payback_inferences(10.0, 2.0) == 5
    assert payback_inferences(10.0, 3.0) == 4
    assert payback_inferences(0.0, 1e-6) == 0
    rng = random.Random(0)
    for _ in range(500):
        run_j = rng.uniform(1e-3, 1e6)
        saving_j = 10 ** rng.uniform(-9, 2)
        n = payback_inferences(run_j, saving_j)
        assert n is not None and n * saving_j >= run_j
        assert (n - 1) * saving_j < run_j


def test_no_saving_never_pays_back() -> None:
    assert payback_inferences(10.0, 0.0) is None
    assert payback_inferences(10.0, -1e-6) is None
    with pytest.raises(ConfigError, match="run_joules"):
        payback_inferences(-1.0, 1.0)
    with pytest.raises(ConfigError, match="saving_joules_per_inference"):
        payback_inferences(1.0, float("nan"))


def stats(energy_uj: float, measured_uj: float | None = None, label: str | None = None) -> dict[str, object]:
    return {
        "energy_uj": energy_uj,
        "energy_source": "estimate (horowitz-45nm)",
        "energy_measured_uj": measured_uj,
        "energy_measured": label,
    }


def test_paybacks_use_each_basis_in_its_own_units() -> None:
    run = estimated_run(120.0)
    (estimated,) = paybacks_from_stats(run, stats(21.0), stats(1.0))
    assert estimated.basis == "estimated" and estimated.saving_uj == pytest.approx(20.0)
    assert estimated.inferences == payback_inferences(120.0, 20e-6) == 6_000_000
    assert estimated.run_label == "estimated (CPU time x W/core)"
    both = paybacks_from_stats(run, stats(21.0, 3000.0, "measured (nvml)"), stats(1.0, 1000.0, "measured (nvml)"))
    assert [p.basis for p in both] == ["estimated", "measured"]
    assert both[1].inferences == 60_000  # 120 J / 2000 µJ
    mixed = paybacks_from_stats(run, stats(21.0, 3000.0, "measured (nvml)"), stats(1.0, 1000.0, "measured (rapl)"))
    assert [p.basis for p in mixed] == ["estimated"]  # two counters are not one saving


def test_a_compressed_model_that_costs_more_is_reported_as_never_paying_back() -> None:
    section = energy_section(estimated_run(50.0), stats(1.0), stats(1.5), scope="compression")
    assert section["payback"][0]["inferences"] is None
    report = Report(model="m", before=stats(1.0), after=stats(1.5), energy=section)
    text = "\n".join(energy_lines(report))
    assert "never" in text and "-0.500 uJ" in text


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 8 * 8, 4),
    )


def test_compress_report_shows_run_energy_saving_and_payback_count() -> None:
    torch.manual_seed(0)
    images, labels = torch.randn(128, 1, 8, 8), torch.randint(0, 4, (128,))
    loader = [(images[i : i + 64], labels[i : i + 64]) for i in range(0, 128, 64)]
    recipe = Recipe.from_dict(
        {"steps": [{"technique": "channel_pruning", "config": {"ratio": 0.5, "train": {"epochs": 0}}}]}
    )
    result = compress(small_cnn(), loader, recipe=recipe, repeats=2, quiet=True, runtime="pytorch", grid_intensity=300)
    report = Report.from_dict(result.report.to_dict())  # what `torchslim report` reads back
    run = RunEnergy.from_dict(report.energy["run"])
    assert run.joules > 0 and run.grid_intensity == 300
    assert report.energy["scope"].startswith("compression")
    (estimated, *_) = report.energy["payback"]
    saving = report.before["energy_uj"] - report.after["energy_uj"]
    assert saving > 0 and estimated["saving_uj"] == pytest.approx(saving)
    assert estimated["inferences"] == payback_inferences(run.joules, saving * 1e-6)
    text = report.render()
    assert f"{estimated['inferences']:,} inferences" in text
    assert f"{saving:,.3f} uJ" in text
    assert run.label in text and "energy of the run (compression" in text
    if not run.measured:
        assert "measured (RAPL)" not in text and "measured (NVML)" not in text
    page = render_html(report)
    assert 'id="energy"' in page and f"{estimated['inferences']:,} inferences" in page


@pytest.mark.slow
def test_demo_report_shows_the_three_figures(tmp_path) -> None:
    from torchslim.demo import run_demo

    report = run_demo(out=tmp_path, train_samples=512, eval_samples=256, epochs=1, distill_epochs=1, quiet=True)
    run = RunEnergy.from_dict(report.energy["run"])
    (estimated, *_) = report.energy["payback"]
    text = report.render()
    assert "energy of the run (compression: the recipe's steps)" in text and run.label in text
    assert f"{estimated['saving_uj']:,.3f} uJ" in text
    assert isinstance(estimated["inferences"], int) and f"{estimated['inferences']:,} inferences" in text
    assert "training energy" in report.notes[0]  # the baseline was trained in this run
    assert 'id="energy"' in (tmp_path / "report.html").read_text()
