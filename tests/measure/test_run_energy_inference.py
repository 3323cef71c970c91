"""Measured J/inference over a timed window with idle power subtracted, on a fake counter."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from torchslim.measure.inference_energy import measure_inference_energy
from torchslim.measure.power import EnergyMeasurement, NotMeasurable, measure_energy


class PowerModelCounter:
    """A fake NVML counter: the device draws `idle_watts` all the time, plus what each call adds (J)."""

    source = "nvml"
    domain_labels = ("gpu0",)

    def __init__(self, idle_watts: float) -> None:
        self.idle_watts = idle_watts
        self.dynamic_joules = 0.0
        self.floor_joules = 0.0  # idle energy up to `since`
        self.since = time.perf_counter()
        self.closed = False

    def set_idle_watts(self, watts: float) -> None:
        now = time.perf_counter()
        self.floor_joules += self.idle_watts * (now - self.since)
        self.idle_watts, self.since = watts, now

    def sample(self) -> float:
        idle = self.floor_joules + self.idle_watts * (time.perf_counter() - self.since)
        return (idle + self.dynamic_joules) * 1e6  # µJ since opened

    def close(self) -> None:
        self.closed = True


def test_idle_power_is_measured_subtracted_and_reported() -> None:
    counter = PowerModelCounter(idle_watts=50.0)

    def call() -> None:
        counter.dynamic_joules += 5.0  # one call of 4 inferences: 1.25 J each above idle

    result = measure_energy(
        call, seconds=0.05, idle_seconds=0.2, items_per_call=4, warmup=0, min_calls=200, counter=counter
    )
    assert isinstance(result, EnergyMeasurement)
    assert result.joules_per_inference == pytest.approx(1.25, rel=1e-3)
    assert result.idle_watts == pytest.approx(50.0, rel=2e-2)  # timer jitter on a busy machine
    assert result.inferences >= 800  # the window covers at least min_calls calls
    assert result.inferences % 4 == 0
    assert result.loop_joules > result.inferences * 1.25  # idle energy was in the loop, then removed
    assert result.label == "measured (nvml)" and counter.closed


def test_a_loop_below_idle_power_is_not_measurable_rather_than_negative() -> None:
    counter = PowerModelCounter(idle_watts=30.0)

    def call() -> None:  # the device's floor drops during the loop (another job ended, say)
        if counter.idle_watts > 10.0:
            counter.set_idle_watts(10.0)

    result = measure_energy(call, seconds=0.02, idle_seconds=0.02, warmup=0, counter=counter)
    assert isinstance(result, NotMeasurable) and "no energy above idle" in result.reason


def test_model_energy_is_measured_per_inference_next_to_the_estimate() -> None:
    counter = PowerModelCounter(idle_watts=20.0)
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))

    def add_energy(*_: object) -> None:
        counter.dynamic_joules += 8.0  # one batch of 8

    model.register_forward_hook(add_energy)
    result = measure_inference_energy(
        model, torch.randn(8, 16), device="cpu", seconds=0.02, idle_seconds=0.1, min_batches=20, counter=counter
    )
    assert result.batch_size == 8
    assert result.measured_uj == pytest.approx(1e6, rel=1e-2)  # 8 J / 8 inferences
    assert result.estimate_uj > 0 and result.estimate_source.startswith("estimate")
    assert result.to_dict()["measured"]["idle_watts"] == pytest.approx(20.0, rel=5e-2)
    assert next(model.parameters()).device.type == "cpu"  # the caller's model stays where it was


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the answer on a machine without CUDA")
def test_without_cuda_the_gpu_measurement_says_why() -> None:
    result = measure_inference_energy(nn.Linear(4, 2), torch.randn(2, 4), device="cuda")
    assert isinstance(result.measured, NotMeasurable) and "CUDA" in result.measured.reason
    assert result.measured_uj is None and result.estimate_uj > 0
    assert "not_measurable" in result.to_dict()
