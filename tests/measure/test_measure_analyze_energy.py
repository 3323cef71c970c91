"""analyze() reports measured joules only when a counter exists, and never invents one."""

from pathlib import Path

import pytest
import torch
from torch import nn

from torchslim.measure import analyze


class CountingModel(nn.Module):
    """A model whose every forward adds `uj_per_call` to a fake RAPL package counter."""

    def __init__(self, counter: Path, uj_per_call: int) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)
        self.counter = counter
        self.uj_per_call = uj_per_call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value = int(self.counter.read_text())
        self.counter.write_text(f"{value + self.uj_per_call}\n")
        return self.fc(x)


def fake_rapl(root: Path) -> Path:
    zone = root / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").write_text("0\n")
    (zone / "max_energy_range_uj").write_text(f"{2**40}\n")
    return zone / "energy_uj"


def test_measured_energy_from_counter(tmp_path):
    counter = fake_rapl(tmp_path / "powercap")
    model = CountingModel(counter, uj_per_call=800)
    stats = analyze(
        model,
        example_input=torch.randn(4, 4),
        repeats=2,
        warmup=1,
        energy_seconds=0.3,
        powercap_root=tmp_path / "powercap",
    )
    assert stats.energy_measured == "measured (rapl)"
    # 800 uJ per call of a batch of 4, nothing drawn while idle -> 200 uJ per inference
    assert stats.energy_measured_uj == pytest.approx(200.0)
    assert stats.energy_source.startswith("estimate (")


def test_not_measurable_says_why(tmp_path):
    stats = analyze(
        nn.Linear(4, 2), example_input=torch.randn(2, 4), repeats=2, warmup=1, powercap_root=tmp_path / "missing"
    )
    assert stats.energy_measured_uj is None
    assert stats.energy_measured.startswith("not measurable here: no RAPL powercap interface")
