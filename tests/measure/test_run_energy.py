"""RunEnergyMeter: windowing, wraparound, units, background sampling and labels that cannot lie."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from torchslim.core.errors import ConfigError
from torchslim.measure.power import RaplCounter
from torchslim.measure.run_energy import (
    DEFAULT_GRID_INTENSITY,
    DEFAULT_WATTS_PER_CORE,
    EnergyMethod,
    EnergyPart,
    RunEnergy,
    RunEnergyMeter,
)
from torchslim.report.energy import part_how


class FakeCounter:
    """A cumulative counter in µJ that the test advances by hand."""

    def __init__(self, source: str = "rapl") -> None:
        self.source = source
        self.domain_labels = ("package-0",) if source == "rapl" else ("gpu0",)
        self.uj = 0.0
        self.samples = 0
        self.closed = False

    def sample(self) -> float:
        self.samples += 1
        return self.uj

    def close(self) -> None:
        self.closed = True


def fake_cpu_clock(values: list[float]):
    readings = iter(values)
    return lambda: next(readings)


def meter(**kwargs) -> RunEnergyMeter:
    kwargs.setdefault("sample_interval_s", None)
    kwargs.setdefault("gpu", False)
    return RunEnergyMeter(**kwargs)


def test_only_energy_inside_the_window_counts() -> None:
    counter = FakeCounter()
    counter.uj = 5_000_000.0  # used before the run: not the run's
    with meter(cpu_counter=counter) as m:
        counter.uj += 2_000_000.0
    counter.uj += 9_000_000.0  # after the run
    run = m.result
    assert run.joules == pytest.approx(2.0)
    assert counter.closed
    assert run.parts[0].method is EnergyMethod.RAPL
    assert run.measured and run.label == "measured (RAPL)"


def test_units_joules_microjoules_watt_hours_and_grams() -> None:
    counter = FakeCounter()
    with meter(cpu_counter=counter, grid_intensity=500.0) as m:
        counter.uj += 3_600_000_000.0  # 3.6e9 µJ = 3600 J = 1 Wh
    run = m.result
    assert run.joules == pytest.approx(3600.0)
    assert run.uj == pytest.approx(3.6e9)
    assert run.wh == pytest.approx(1.0)
    assert run.kwh == pytest.approx(1e-3)
    assert run.grams_co2e == pytest.approx(0.5)  # 1e-3 kWh x 500 g/kWh
    assert run.to_dict()["wh"] == pytest.approx(1.0)


def test_default_grid_intensity_and_watts_per_core_are_the_cited_figures() -> None:
    assert DEFAULT_GRID_INTENSITY == 475.0  # IEA 2019 world average, as in Green Algorithms
    assert DEFAULT_WATTS_PER_CORE == 12.0  # Green Algorithms "Any" CPU, W per core
    with meter(cpu_counter=FakeCounter()) as m:
        pass
    assert m.result.grid_intensity == DEFAULT_GRID_INTENSITY


def write(path: Path, value: int) -> None:
    (path / "energy_uj").write_text(f"{value}\n")


def fake_rapl(root: Path, energy: int, max_range: int) -> Path:
    zone = root / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "max_energy_range_uj").write_text(f"{max_range}\n")
    write(zone, energy)
    return zone


def test_rapl_wraparounds_within_a_run_are_undone(tmp_path: Path) -> None:
    zone = fake_rapl(tmp_path, 999_000, max_range=1_000_000)
    with meter(cpu_counter=RaplCounter(tmp_path)) as m:
        write(zone, 500_000)  # wrapped once: 1_000 to the top + 500_000
        m.sample()
        write(zone, 200_000)  # wrapped again: 500_000 to the top + 200_000
    assert m.result.joules == pytest.approx((501_000 + 700_000) / 1e6)
    assert m.result.parts[0].domains == ("package-0",)


def test_meter_opens_rapl_itself_from_the_powercap_root(tmp_path: Path) -> None:
    zone = fake_rapl(tmp_path, 10, max_range=1_000_000)
    with RunEnergyMeter(powercap_root=tmp_path, gpu=False, sample_interval_s=None) as m:
        write(zone, 250_010)
    assert m.result.parts[0].method is EnergyMethod.RAPL
    assert m.result.joules == pytest.approx(0.25)


def test_background_thread_samples_the_counters() -> None:
    counter = FakeCounter()
    with meter(cpu_counter=counter, sample_interval_s=0.005) as m:
        time.sleep(0.1)
        counter.uj += 1e6
    assert counter.samples >= 4  # start, end and background reads
    assert m.result.joules == pytest.approx(1.0)


def test_without_a_counter_the_cpu_energy_is_an_estimate_labelled_so(tmp_path: Path) -> None:
    with meter(powercap_root=tmp_path / "absent", cpu_time=fake_cpu_clock([3.0, 13.0]), watts_per_core=10.0) as m:
        pass
    run = m.result
    (part,) = run.parts
    assert part.method is EnergyMethod.CPU_TIME
    assert part.cpu_seconds == pytest.approx(10.0)
    assert run.joules == pytest.approx(100.0)  # 10 core-s x 10 W
    assert not run.measured and not run.to_dict()["measured"]
    assert run.label == "estimated (CPU time x W/core)"
    assert "measured" not in run.label and "measured" not in part.how
    assert any("estimated from CPU time" in note for note in run.notes)


def test_a_gpu_counter_next_to_an_estimated_cpu_gives_a_mixed_label(tmp_path: Path) -> None:
    gpu = FakeCounter("nvml")
    with meter(powercap_root=tmp_path, gpu_counters=[gpu], cpu_time=fake_cpu_clock([0.0, 2.0])) as m:
        gpu.uj += 7e6
    run = m.result
    assert [p.method for p in run.parts] == [EnergyMethod.CPU_TIME, EnergyMethod.NVML]
    assert run.joules == pytest.approx(7.0 + 2.0 * DEFAULT_WATTS_PER_CORE)
    assert not run.measured  # one part is an estimate
    assert run.label == "estimated (CPU time x W/core) + measured (NVML)"


def test_an_estimate_cannot_be_built_or_read_back_as_a_measurement() -> None:
    with pytest.raises(ConfigError, match="method must be an EnergyMethod"):
        EnergyPart(method="rapl", joules=1.0)  # type: ignore[arg-type]  # the point of the test
    with pytest.raises(ConfigError, match="needs cpu_seconds"):
        EnergyPart(method=EnergyMethod.CPU_TIME, joules=1.0)
    with pytest.raises(ConfigError, match="no cpu_seconds"):
        EnergyPart(method=EnergyMethod.RAPL, joules=1.0, cpu_seconds=1.0, watts_per_core=12.0)
    with pytest.raises(ConfigError, match="not cpu_seconds x watts_per_core"):
        EnergyPart(method=EnergyMethod.CPU_TIME, joules=5.0, cpu_seconds=1.0, watts_per_core=12.0)
    estimate = EnergyPart(method=EnergyMethod.CPU_TIME, joules=24.0, cpu_seconds=2.0, watts_per_core=12.0)
    tampered = dict(estimate.to_dict(), label="measured (RAPL)")
    back = EnergyPart.from_dict(tampered)
    assert back.label == "estimated (CPU time x W/core)"
    assert part_how(tampered).startswith("estimated (CPU time x W/core)")
    run = RunEnergy.from_dict({"parts": [tampered], "seconds": 1.0, "label": "measured (RAPL)", "measured": True})
    assert not run.measured and run.label.startswith("estimated")
    with pytest.raises(ConfigError, match="must be one of"):
        EnergyPart.from_dict({"method": "guess", "joules": 1.0})


def test_report_labels_follow_the_method_for_every_method() -> None:
    for method in EnergyMethod:
        extra = {"cpu_seconds": 1.0, "watts_per_core": 2.0} if not method.measured else {}
        part = EnergyPart(method=method, joules=2.0 if extra else 1.0, **extra)
        assert part_how(part.to_dict()).startswith(method.label)
        assert method.label.startswith("measured" if method.measured else "estimated")


def test_bad_options_and_early_result_are_refused() -> None:
    with pytest.raises(ConfigError, match="grid_intensity"):
        RunEnergyMeter(grid_intensity=-1.0)
    with pytest.raises(ConfigError, match="watts_per_core"):
        RunEnergyMeter(watts_per_core=0.0)
    with pytest.raises(ConfigError, match="after the `with` block"):
        _ = RunEnergyMeter().result


def test_counters_are_closed_when_the_run_raises() -> None:
    counter = FakeCounter()
    with pytest.raises(RuntimeError, match="boom"):
        with meter(cpu_counter=counter):
            counter.uj += 1e6
            raise RuntimeError("boom")
    assert counter.closed
