"""Issue 3 on the built-in models: energy in every analysis, by hand on lenet-300-100."""

import pytest

import torchslim as ts
from torchslim.models import MODELS, build_model

FP32_MAC_PJ = 3.7 + 0.9  # Horowitz 2014: fp32 multiply + add
SRAM_PJ_PER_BYTE = 5.0 / 4  # 32-bit SRAM read 5 pJ


def test_lenet_300_100_estimate_by_hand():
    stats = ts.analyze(build_model("lenet-300-100"), repeats=1)
    layers = [(784, 300), (300, 100), (100, 10)]
    macs = sum(i * o for i, o in layers)
    weight_bytes = sum((i * o + o) * 4 for i, o in layers)
    activation_bytes = sum((i + o) * 4 for i, o in layers)
    hand_uj = (macs * FP32_MAC_PJ + (weight_bytes + activation_bytes) * SRAM_PJ_PER_BYTE) * 1e-6
    assert stats.macs == macs
    assert stats.energy_uj == pytest.approx(hand_uj, rel=1e-3)
    assert stats.energy_source == "estimate (horowitz-45nm)"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_builtin_model_reports_energy(name):
    stats = ts.analyze(build_model(name), repeats=1).to_dict()
    assert stats["energy_uj"] > 0
    assert stats["energy_source"] == "estimate (horowitz-45nm)"
    assert stats["energy_measured"].startswith(("measured (", "not measurable here: "))
    per_layer = [row["energy_uj"] for row in stats["layers"] if row["energy_uj"]]
    assert sum(per_layer) == pytest.approx(stats["energy_uj"], rel=1e-6)
