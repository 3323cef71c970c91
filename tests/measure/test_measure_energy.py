from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from torchslim.core.errors import ConfigError, UnknownNameError
from torchslim.measure import (
    EnergyMeasurement,
    EnergyProfile,
    LayerCost,
    NotMeasurable,
    available_profiles,
    compute_class,
    energy_report_dict,
    estimate_energy,
    estimate_from_layers,
    load_profile,
)

# Horowitz, ISSCC 2014 (45 nm), as used by the default profile
FP32_MAC_PJ = 3.7 + 0.9
INT8_MAC_PJ = 0.2 + 0.1  # int8 multiply + int32 accumulate
SRAM_PJ_PER_BYTE = 5.0 / 4  # 5 pJ per 32-bit word
DRAM_PJ_PER_BYTE = 640.0 / 4


def lenet_hand_uj(h1: int = 300, h2: int = 100, bits: int = 32, mac_pj: float = FP32_MAC_PJ) -> float:
    """The energy formula written out for the 784-h1-h2-10 MLP, batch 1, everything on chip."""
    shapes = [(784, h1), (h1, h2), (h2, 10)]
    macs = sum(i * o for i, o in shapes)
    weights = sum(i * o + o for i, o in shapes)  # biases at the weight precision
    activations = sum(i + o for i, o in shapes)  # each layer reads its input, writes its output
    compute_pj = macs * mac_pj
    memory_pj = (weights + activations) * bits / 8 * SRAM_PJ_PER_BYTE
    return (compute_pj + memory_pj) * 1e-6


def test_lenet_estimate_matches_the_hand_computation(toys: SimpleNamespace) -> None:
    estimate = estimate_energy(toys.lenet_300_100(), torch.randn(1, 1, 28, 28))
    hand = lenet_hand_uj()
    assert hand == pytest.approx(2.56554, rel=1e-9)  # 266,200 MACs x 4.6 pJ + 1,068,034 B x 1.25 pJ
    assert estimate.total_uj == pytest.approx(hand, rel=1e-3)
    assert estimate.compute_uj == pytest.approx(266_200 * FP32_MAC_PJ * 1e-6, rel=1e-9)
    assert estimate.total_uj == pytest.approx(estimate.compute_uj + estimate.memory_uj)
    assert estimate.source == "estimate (horowitz-45nm)"
    assert [layer.name for layer in estimate.per_layer] == ["1", "3", "5"]
    assert [layer.macs for layer in estimate.per_layer] == [235_200, 30_000, 1_000]
    assert all(layer.weight_storage == "sram" and layer.compute_class == "fp32" for layer in estimate.per_layer)
    assert sum(layer.total_uj for layer in estimate.per_layer) == pytest.approx(estimate.total_uj)


def test_estimate_is_per_inference(toys: SimpleNamespace) -> None:
    model = toys.lenet_300_100()
    one = estimate_energy(model, torch.randn(1, 1, 28, 28))
    four = estimate_energy(model, torch.randn(4, 1, 28, 28))
    assert four.batch_size == 4
    assert four.compute_uj == pytest.approx(one.compute_uj)
    # weights are read once per forward pass and shared by the 4 samples
    assert four.memory_uj < one.memory_uj


def test_int8_weights_and_activations_cut_compute_at_least_10x(toys: SimpleNamespace) -> None:
    fp32 = estimate_energy(toys.lenet_300_100(), torch.randn(1, 1, 28, 28))
    model = toys.compress_linears(toys.lenet_300_100(), bits=8, input_bits=8)  # bits from storage_bits() only
    int8 = estimate_energy(model, torch.randn(1, 1, 28, 28))
    assert fp32.compute_uj / int8.compute_uj >= 10
    assert fp32.compute_uj / int8.compute_uj == pytest.approx(FP32_MAC_PJ / INT8_MAC_PJ)
    assert int8.memory_uj == pytest.approx(fp32.memory_uj / 4)
    assert int8.total_uj == pytest.approx(lenet_hand_uj(bits=8, mac_pj=INT8_MAC_PJ), rel=1e-3)
    assert {layer.compute_class for layer in int8.per_layer} == {"int8"}


def test_weight_only_int8_keeps_fp32_arithmetic(toys: SimpleNamespace) -> None:
    fp32 = estimate_energy(toys.lenet_300_100(), torch.randn(1, 1, 28, 28))
    model = toys.compress_linears(toys.lenet_300_100(), bits=8)  # activation None: the input stays float
    weight_only = estimate_energy(model, torch.randn(1, 1, 28, 28))
    assert weight_only.compute_uj == pytest.approx(fp32.compute_uj)
    assert weight_only.memory_uj < fp32.memory_uj


def test_half_width_model_costs_less(toys: SimpleNamespace) -> None:
    x = torch.randn(1, 1, 28, 28)
    full = estimate_energy(toys.lenet_300_100(), x)
    narrow = estimate_energy(toys.lenet_300_100((150, 50)), x)
    assert narrow.total_uj < full.total_uj
    assert narrow.total_uj == pytest.approx(lenet_hand_uj(150, 50), rel=1e-3)


def test_unstructured_zeros_are_skipped_only_with_a_sparse_kernel(toys: SimpleNamespace) -> None:
    x = torch.randn(1, 1, 28, 28)
    dense = estimate_energy(toys.lenet_300_100(), x)
    model = toys.lenet_300_100()
    fc = model[1]
    with torch.no_grad():
        fc.weight[:, : 784 * 9 // 10] = 0.0  # 90% of the weight matrix
    masked = estimate_energy(model, x)
    assert masked.total_uj == pytest.approx(dense.total_uj)  # zeros still multiplied and stored
    fc.sparse_kernel = True
    sparse = estimate_energy(model, x)
    nonzero = 300 * (784 - 784 * 9 // 10) + 300
    density = nonzero / 235_500
    layer = sparse.per_layer[0]
    assert layer.compute_uj == pytest.approx(235_200 * density * FP32_MAC_PJ * 1e-6)
    assert layer.weight_bytes == pytest.approx(nonzero * (32 + 4) / 8)  # value + 4-bit index
    assert sparse.total_uj < dense.total_uj


def test_parametrized_masks_count_through_sparse_kernel(toys: SimpleNamespace) -> None:
    class Mask(nn.Module):
        def __init__(self, mask: torch.Tensor) -> None:
            super().__init__()
            self.register_buffer("mask", mask)

        def forward(self, w: torch.Tensor) -> torch.Tensor:
            return w * self.mask

    model = toys.lenet_300_100()
    mask = torch.zeros(300, 784)
    mask[:, :392] = 1
    parametrize.register_parametrization(model[1], "weight", Mask(mask))
    model[1].sparse_kernel = True
    layer = estimate_energy(model, torch.randn(1, 1, 28, 28)).per_layer[0]
    assert layer.name == "1"
    density = (300 * 392 + 300) / 235_500
    assert layer.compute_uj == pytest.approx(235_200 * density * FP32_MAC_PJ * 1e-6)


def test_weights_that_do_not_fit_on_chip_come_from_dram(toys: SimpleNamespace) -> None:
    x = torch.randn(1, 1, 28, 28)
    on_chip = estimate_energy(toys.lenet_300_100(), x)
    off_chip = estimate_energy(toys.lenet_300_100(), x, sram_bytes=0)
    weight_bytes = 266_610 * 4
    assert off_chip.memory_uj - on_chip.memory_uj == pytest.approx(
        weight_bytes * (DRAM_PJ_PER_BYTE - SRAM_PJ_PER_BYTE) * 1e-6
    )
    assert {layer.weight_storage for layer in off_chip.per_layer} == {"dram"}
    # a budget that holds the small layers but not the first: greedy in model order
    partial = estimate_energy(toys.lenet_300_100(), x, sram_bytes=500_000)
    assert [layer.weight_storage for layer in partial.per_layer] == ["dram", "sram", "sram"]


def test_estimate_from_layers_by_hand() -> None:
    profile = load_profile("horowitz-45nm").replace(weight_sram_bytes=1000, activation_sram_bytes=100)
    layers = [
        LayerCost(
            "a",
            macs=1000,
            weight_elements=200,
            weight_nonzero=200,
            weight_bits=32,
            activation_bits=32,
            activations_in=10,
            activations_out=10,
        ),  # 800 B weights: SRAM
        LayerCost(
            "b",
            macs=500,
            weight_elements=300,
            weight_nonzero=300,
            weight_bits=8,
            activation_bits=8,
            activations_in=100,
            activations_out=20,
        ),  # 300 B > 200 B left: DRAM
        LayerCost(
            "c",
            macs=64,
            weight_elements=64,
            weight_nonzero=64,
            weight_bits=1,
            activation_bits=1,
            activations_in=64,
            activations_out=1,
        ),  # binary, 8 B: still fits
    ]
    est = estimate_from_layers(layers, profile, batch_size=2)
    a_pj = 1000 * 4.6 + 800 * 1.25 + 80 * 1.25
    b_pj = 500 * 0.3 + 300 * 160 + 120 * 160  # activations 120 B > 100 B budget: DRAM
    c_pj = 64 * (0.003125 + 0.00375) + 8 * 1.25 + 65 / 8 * 1.25
    assert [layer.weight_storage for layer in est.per_layer] == ["sram", "dram", "sram"]
    assert [layer.compute_class for layer in est.per_layer] == ["fp32", "int8", "binary"]
    for layer, pj in zip(est.per_layer, (a_pj, b_pj, c_pj), strict=True):
        assert layer.total_uj == pytest.approx(pj * 1e-6 / 2)
    assert est.total_uj == pytest.approx((a_pj + b_pj + c_pj) * 1e-6 / 2)


def test_compute_class_table() -> None:
    assert compute_class(32, 32) == "fp32"
    assert compute_class(16, 16) == "fp16"
    assert compute_class(8, 32) == "fp32"
    assert compute_class(8, 8) == "int8"
    assert compute_class(4, 8) == "int8"
    assert compute_class(4, 4) == "int4"
    assert compute_class(3, 3) == "int4"
    assert compute_class(2, 2) == "int2"
    assert compute_class(1, 1) == "binary"
    with pytest.raises(ConfigError):
        compute_class(0, 8)


def test_bf16_model_is_charged_as_16_bit(toys: SimpleNamespace) -> None:
    model = toys.lenet_300_100().to(torch.bfloat16)
    estimate = estimate_energy(model, torch.randn(1, 1, 28, 28, dtype=torch.bfloat16))
    assert {(e.weight_bits, e.activation_bits, e.compute_class) for e in estimate.per_layer} == {(16, 16, "fp16")}
    assert estimate.compute_uj == pytest.approx(266_200 * (1.1 + 0.4) * 1e-6)


def test_estimate_leaves_the_model_unchanged(toys: SimpleNamespace) -> None:
    model = toys.SmallCNN()
    model.train()
    before = toys.snapshot(model)
    estimate = estimate_energy(model, torch.randn(2, 1, 8, 8))
    toys.assert_unchanged(before, toys.snapshot(model))
    assert {layer.name for layer in estimate.per_layer} == {"conv1", "conv2", "classifier"}


# --- profiles -------------------------------------------------------------------------------------


def test_shipped_profiles_load_and_cite_sources() -> None:
    names = available_profiles()
    assert "horowitz-45nm" in names and len(names) >= 2
    for name in names:
        profile = load_profile(name)
        assert profile.name == name
        assert profile.source and profile.description
    h = load_profile("horowitz-45nm")
    assert (h.mac("fp32").mult, h.mac("fp32").add) == (3.7, 0.9)
    assert (h.mac("int8").mult, h.mac("fp16").mult, h.mac("fp16").add) == (0.2, 1.1, 0.4)
    assert (h.sram_pj_per_32bit, h.dram_pj_per_32bit) == (5.0, 640.0)
    with pytest.raises(UnknownNameError, match="Did you mean 'horowitz-45nm'"):
        load_profile("horowitz-45")


def test_profile_yaml_and_json_round_trip(tmp_path: Path, toys: SimpleNamespace) -> None:
    original = load_profile("horowitz-45nm").replace(name="my-chip", weight_sram_bytes=1 << 20)
    path = tmp_path / "chip.yaml"
    path.write_text(original.to_yaml())
    loaded = EnergyProfile.from_file(path)
    assert loaded == original
    json_path = tmp_path / "chip.json"
    json_path.write_text(json.dumps(original.to_dict()))
    assert EnergyProfile.from_file(json_path) == original
    x = torch.randn(1, 1, 28, 28)
    assert estimate_energy(toys.lenet_300_100(), x, profile=path).source == "estimate (my-chip)"


def test_profile_rejects_unknown_keys(tmp_path: Path) -> None:
    data = load_profile("horowitz-45nm").to_dict()
    data["dram_pj_per_32bits"] = 1.0
    path = tmp_path / "bad.yaml"
    import yaml

    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="Unknown key 'dram_pj_per_32bits'.*Did you mean 'dram_pj_per_32bit'"):
        EnergyProfile.from_file(path)
    data = load_profile("horowitz-45nm").to_dict()
    data["mac_pj"]["int8"]["mul"] = 0.2
    with pytest.raises(ConfigError, match="Unknown key 'mul'"):
        EnergyProfile.from_dict(data)
    data = load_profile("horowitz-45nm").to_dict()
    del data["mac_pj"]["int4"]
    with pytest.raises(ConfigError, match="int4"):
        EnergyProfile.from_dict(data)
    path.write_text("!!python/object/apply:os.system ['true']")
    with pytest.raises(ConfigError, match="not valid YAML"):
        EnergyProfile.from_file(path)


def test_profile_built_in_python() -> None:
    table = {c: {"mult": 1.0, "add": 1.0} for c in ("fp32", "fp16", "int8", "int4", "int2", "binary")}
    profile = EnergyProfile(
        name="unit",
        mac_pj=table,
        sram_pj_per_32bit=4.0,
        dram_pj_per_32bit=4.0,
        weight_sram_bytes=0,
        activation_sram_bytes=0,
    )
    layer = LayerCost(
        "x",
        macs=10,
        weight_elements=4,
        weight_nonzero=4,
        weight_bits=32,
        activation_bits=32,
        activations_in=1,
        activations_out=1,
    )
    est = estimate_from_layers([layer], profile)
    assert est.total_uj == pytest.approx((10 * 2.0 + 16 * 1.0 + 8 * 1.0) * 1e-6)
    with pytest.raises(ConfigError, match="must be a finite number > 0"):
        profile.replace(dram_pj_per_32bit=-1.0)


# --- report fields -------------------------------------------------------------------------------


def test_energy_report_dict(toys: SimpleNamespace) -> None:
    estimate = estimate_energy(toys.lenet_300_100(), torch.randn(1, 1, 28, 28))
    report = energy_report_dict(estimate)
    assert report["energy_uj"] == pytest.approx(estimate.total_uj)
    assert report["energy_source"] == "estimate (horowitz-45nm)"
    assert set(report["energy_layers"]) == {"1", "3", "5"}
    assert report["energy_measured"] is None

    report = energy_report_dict(estimate, NotMeasurable("no RAPL here"))
    assert report["energy_source"] == "estimate (horowitz-45nm)"
    assert report["energy_measured"] == "no RAPL here"

    measured = EnergyMeasurement(
        joules_per_inference=0.002, source="rapl", inferences=10, seconds=1.0, loop_joules=0.5, idle_watts=0.3
    )
    report = energy_report_dict(estimate, measured)
    assert report["energy_source"] == "measured (rapl)"
    assert report["energy_uj"] == pytest.approx(2000.0)
    assert report["energy_measured"] == pytest.approx(2000.0)
    assert report["energy_estimate_uj"] == pytest.approx(estimate.total_uj)
