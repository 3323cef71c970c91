from __future__ import annotations

from pathlib import Path

import pytest
import torch

from torchslim.measure import NotMeasurable, RaplCounter, measure_energy, rapl_delta_uj, rapl_domains
from torchslim.measure.power import CounterUnavailable, joules_per_inference


def make_zone(path: Path, name: str, energy: int, max_range: int = 1_000_000) -> Path:
    path.mkdir(parents=True)
    (path / "name").write_text(name + "\n")
    (path / "energy_uj").write_text(f"{energy}\n")
    (path / "max_energy_range_uj").write_text(f"{max_range}\n")
    return path


def fake_powercap(root: Path) -> Path:
    make_zone(root / "intel-rapl:0", "package-0", 100)
    make_zone(root / "intel-rapl:0" / "intel-rapl:0:0", "core", 50)
    make_zone(root / "intel-rapl:0" / "intel-rapl:0:1", "dram", 10)
    make_zone(root / "intel-rapl:1", "package-1", 200)
    (root / "intel-rapl").mkdir()  # the control-type directory, no counter
    return root


def write(path: Path, value: int) -> None:
    (path / "energy_uj").write_text(f"{value}\n")


def test_rapl_delta_handles_wraparound() -> None:
    assert rapl_delta_uj(100, 250, 1000) == 150
    assert rapl_delta_uj(990, 10, 1000) == 20
    with pytest.raises(CounterUnavailable):
        rapl_delta_uj(10, 5, 0)


def test_rapl_domains_sum_packages_and_dram_not_core(tmp_path: Path) -> None:
    root = fake_powercap(tmp_path)
    labels = [d.label for d in rapl_domains(root)]
    assert sorted(labels) == ["dram", "package-0", "package-1"]
    assert all(d.max_energy_range_uj == 1_000_000 for d in rapl_domains(root))


def test_rapl_counter_reads_fake_sysfs_with_wraparound(tmp_path: Path) -> None:
    root = fake_powercap(tmp_path)
    pkg0 = root / "intel-rapl:0"
    dram = pkg0 / "intel-rapl:0:1"
    core = pkg0 / "intel-rapl:0:0"
    counter = RaplCounter(root)
    write(pkg0, 999_900)
    write(dram, 40)
    write(core, 999_999)  # inside the package: must not be added
    assert counter.sample() == (999_900 - 100) + (40 - 10)
    write(pkg0, 400)  # wrapped: 100 to the top, then 400
    assert counter.sample() == (999_900 - 100) + 30 + 500


def test_measure_energy_on_fake_sysfs(tmp_path: Path) -> None:
    root = fake_powercap(tmp_path)
    pkg1 = root / "intel-rapl:1"
    state = {"value": 999_000}
    write(pkg1, state["value"])

    def work() -> None:  # each call "uses" 500 uJ on package-1, wrapping at 1e6
        state["value"] = (state["value"] + 500) % 1_000_000
        write(pkg1, state["value"])

    result = measure_energy(
        work, seconds=0.05, idle_seconds=0.02, sample_interval_s=0.005, powercap_root=root, warmup=1
    )
    assert not isinstance(result, NotMeasurable), result
    assert result.source == "rapl" and result.label == "measured (rapl)"
    assert result.idle_watts == 0.0
    assert result.joules_per_inference == pytest.approx(500e-6)
    assert result.inferences > 1
    assert result.loop_joules == pytest.approx(result.inferences * 500e-6)


def test_counter_that_does_not_move_is_not_measurable(tmp_path: Path) -> None:
    root = fake_powercap(tmp_path)
    result = measure_energy(lambda: None, seconds=0.01, idle_seconds=0.01, powercap_root=root)
    assert isinstance(result, NotMeasurable)
    assert "did not advance" in result.reason


def test_idle_power_is_subtracted() -> None:
    # 10 J over a 2 s loop, 4 J over a 2 s idle period (2 W): 10 - 2 * 2 = 6 J over 3 inferences
    per_inference, idle_w = joules_per_inference(10e6, 2.0, 4e6, 2.0, 3)
    assert idle_w == pytest.approx(2.0)
    assert per_inference == pytest.approx(2.0)


def test_not_measurable_here(tmp_path: Path) -> None:
    result = measure_energy(lambda: None, seconds=0.01, powercap_root=tmp_path / "no-powercap")
    assert isinstance(result, NotMeasurable)
    assert "powercap" in result.reason
    if not Path("/sys/class/powercap").exists():
        result = measure_energy(lambda: None, seconds=0.01)
        assert isinstance(result, NotMeasurable)
    result = measure_energy(lambda: None, seconds=0.01, device="tpu")
    assert isinstance(result, NotMeasurable) and "device" in result.reason


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_cuda_without_gpu_is_not_measurable() -> None:
    result = measure_energy(lambda: None, seconds=0.01, device="cuda")
    assert isinstance(result, NotMeasurable)
    assert "pynvml" in result.reason or "NVML" in result.reason


def test_unreadable_counter_is_not_measurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = fake_powercap(tmp_path)
    real_read_text = Path.read_text

    def deny(self: Path, *args: object, **kwargs: object) -> str:
        if self.name == "energy_uj":  # as on Linux >= 5.10 for a non-root user
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", deny)
    result = measure_energy(lambda: None, seconds=0.01, powercap_root=root)
    assert isinstance(result, NotMeasurable)
    assert "permission denied" in result.reason
