"""Measured J/inference over a timed window with idle power subtracted, on a fake counter."""

from __future__ import annotations

import time
from typing import Any

import pytest
import torch
from torch import nn

from torchslim.measure import power
from torchslim.measure.inference_energy import measure_inference_energy
from torchslim.measure.power import EnergyMeasurement, NotMeasurable, measure_energy


class VirtualClock:
    """Stands in for the ``time`` module of torchslim.measure.power: time passes only by sleep() and
    by the work a test's call says it took, so windows and energies are exact on a busy machine."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 1e-6)  # like a real sleep, never shorter than a microsecond


class PowerModelCounter:
    """A fake NVML counter: the device draws `idle_watts` all the time, plus what each call adds (J)."""

    source = "nvml"
    domain_labels = ("gpu0",)

    def __init__(self, idle_watts: float, clock: Any = time) -> None:
        self.clock = clock
        self.idle_watts = idle_watts
        self.dynamic_joules = 0.0
        self.floor_joules = 0.0  # idle energy up to `since`
        self.since = clock.perf_counter()
        self.closed = False

    def set_idle_watts(self, watts: float) -> None:
        now = self.clock.perf_counter()
        self.floor_joules += self.idle_watts * (now - self.since)
        self.idle_watts, self.since = watts, now

    def sample(self) -> float:
        idle = self.floor_joules + self.idle_watts * (self.clock.perf_counter() - self.since)
        return (idle + self.dynamic_joules) * 1e6  # µJ since opened

    def close(self) -> None:
        self.closed = True


def test_idle_power_is_measured_subtracted_and_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = VirtualClock()
    monkeypatch.setattr(power, "time", clock)
    counter = PowerModelCounter(idle_watts=100.0, clock=clock)

    def call() -> None:  # one batch of 4 inferences: 10 ms and 0.5 J above idle
        clock.now += 0.010
        counter.dynamic_joules += 0.5

    result = measure_energy(
        call, seconds=1.0, idle_seconds=2.0, items_per_call=4, warmup=3, min_calls=200, counter=counter
    )
    assert isinstance(result, EnergyMeasurement)
    assert result.idle_watts == pytest.approx(100.0)
    assert result.inferences == 800  # 200 calls (min_calls) outlast the 1 s window: 2 s of batches
    assert result.seconds == pytest.approx(2.0)
    assert result.loop_joules == pytest.approx(200 * 0.5 + 100.0 * 2.0)  # idle energy is in the window
    assert result.joules_per_inference == pytest.approx(0.125)  # and subtracted: 0.5 J / 4
    assert result.uj_per_inference == pytest.approx(125_000.0)
    assert result.label == "measured (nvml)" and result.domains == ("gpu0",) and counter.closed


def test_the_window_is_at_least_the_asked_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = VirtualClock()
    monkeypatch.setattr(power, "time", clock)
    counter = PowerModelCounter(idle_watts=10.0, clock=clock)

    def call() -> None:
        clock.now += 0.010
        counter.dynamic_joules += 0.2

    result = measure_energy(call, seconds=3.0, idle_seconds=1.0, warmup=0, min_calls=5, counter=counter)
    assert isinstance(result, EnergyMeasurement)
    assert 3.0 <= result.seconds < 3.0 + 0.011  # float steps of 10 ms may need one more call
    assert result.inferences == round(result.seconds / 0.010)
    assert result.joules_per_inference == pytest.approx(0.2)


def test_a_loop_below_idle_power_is_not_measurable_rather_than_negative() -> None:
    counter = PowerModelCounter(idle_watts=30.0)

    def call() -> None:  # the device's floor drops during the loop (another job ended, say)
        if counter.idle_watts > 10.0:
            counter.set_idle_watts(10.0)

    result = measure_energy(call, seconds=0.02, idle_seconds=0.02, warmup=0, counter=counter)
    assert isinstance(result, NotMeasurable) and "no energy above idle" in result.reason


def test_model_energy_is_measured_per_inference_next_to_the_estimate(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = VirtualClock()
    monkeypatch.setattr(power, "time", clock)
    counter = PowerModelCounter(idle_watts=20.0, clock=clock)
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))

    def add_energy(*_: object) -> None:  # one batch of 8: 10 ms, 8 J above idle
        clock.now += 0.010
        counter.dynamic_joules += 8.0

    model.register_forward_hook(add_energy)
    result = measure_inference_energy(
        model, torch.randn(8, 16), device="cpu", seconds=0.5, idle_seconds=1.0, min_batches=20, counter=counter
    )
    assert result.batch_size == 8
    assert result.measured_uj == pytest.approx(1e6)  # 8 J / 8 inferences, idle removed
    assert result.estimate_uj > 0 and result.estimate_source.startswith("estimate")
    assert result.to_dict()["measured"]["idle_watts"] == pytest.approx(20.0)
    assert result.to_dict()["measured"]["inferences"] >= 8 * 50  # a window of many batches
    assert next(model.parameters()).device.type == "cpu"  # the caller's model stays where it was


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the answer on a machine without CUDA")
def test_without_cuda_the_gpu_measurement_says_why() -> None:
    result = measure_inference_energy(nn.Linear(4, 2), torch.randn(2, 4), device="cuda")
    assert isinstance(result.measured, NotMeasurable) and "CUDA" in result.measured.reason
    assert result.measured_uj is None and result.estimate_uj > 0
    assert "not_measurable" in result.to_dict()
