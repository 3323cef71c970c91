"""The peers of benchmarks/nonuniform.py run on a tiny random model (so the benchmark cannot rot):
coremltools palettization keeps at most 2**bits values per layer and its bytes are counted and
written; Brevitas binary / ternary layers take 2 / 3 values per output channel with 8-bit edges and
train through torchslim's loop; the verdict says why a torchslim row is not level and smaller."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"

pytest.importorskip("coremltools")
pytest.importorskip("brevitas")


def _load(name: str):
    if name not in sys.modules:
        sys.path.insert(0, str(BENCH))
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def peers():
    return _load("_nonuniform_peers")


@pytest.fixture(scope="module")
def bench():
    return _load("nonuniform")


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 32), nn.ReLU(), nn.Linear(32, 10)
    ).eval()


def tiny_loader(n: int = 64, batch: int = 16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(n, 1, 8, 8, generator=generator)
    y = torch.randint(0, 10, (n,), generator=generator)
    return [(x[i : i + batch], y[i : i + batch]) for i in range(0, n, batch)]


def test_coremltools_palettization_values_and_bytes(peers, tmp_path):
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    palettized = peers.coreml_ptq(model, 2)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the input is untouched
    sizes = peers.coreml_palette_sizes(palettized)
    assert set(sizes) == {"0", "3", "5"} and all(1 < n <= 4 for n in sizes.values())
    counted = peers.coreml_counted_bytes(palettized, 2)
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert counted["indices"] == sum(
        -(-m.weight.numel() * 2 // 8) for m in palettized.modules() if hasattr(m, "weight")
    )
    assert counted["codebooks"] == 3 * 4 * 4 and counted["total"] < weights * 4
    fp32 = peers.save_state(model.state_dict(), tmp_path / "fp32.safetensors")
    assert fp32 == (tmp_path / "fp32.safetensors").stat().st_size > counted["total"]
    package, note = peers.coreml_package_bytes(palettized, tiny_loader()[0][0][:1])
    assert package is None or package > counted["indices"], note


def test_coremltools_dkm_trains_through_torchslim_loop(peers):
    from torchslim.train import TrainConfig

    model = tiny_model()
    trained = peers.coreml_dkm(model, 2, tiny_loader(), train_config=TrainConfig(epochs=1, lr=1e-2), seed=0)
    sizes = peers.coreml_palette_sizes(trained)
    assert len(sizes) == 3 and max(sizes.values()) <= 4  # weight_threshold=0: every layer, the head too


@pytest.mark.parametrize(("kind", "bits", "values"), [("binary", 1, 2), ("ternary", 2, 3)])
def test_brevitas_binary_ternary_edges_8bit_and_train(peers, tmp_path, kind, bits, values):
    from torchslim.train import TrainConfig, train

    model = peers.brevitas_model(tiny_model(), kind, "per_channel")
    layers = peers.brevitas_layer_values(model)
    assert layers["0"]["bits"] == 8 and layers["5"]["bits"] == 8  # first and last stay 8-bit
    assert layers["3"] == {"bits": bits, "values_per_channel": values}
    weight = model.get_submodule("3").weight.detach().clone()
    train(model, tiny_loader(), config=TrainConfig(epochs=1, lr=1e-2), seed=0, quiet=True)
    assert not torch.equal(weight, model.get_submodule("3").weight)
    assert peers.brevitas_layer_values(model)["3"]["values_per_channel"] <= values
    ideal = peers.brevitas_ideal_bytes(model)
    assert ideal["weights"] == 36 + 256 * 32 * bits // 8 + 320  # 8-bit conv, packed middle, 8-bit head
    assert ideal["total"] < peers.brevitas_state_file_bytes(model, tmp_path / "b.safetensors")
    assert model(tiny_loader()[0][0]).shape == (16, 10)


def test_brevitas_shipped_quantizers_are_the_const_classes(peers):
    from brevitas.quant import SignedBinaryWeightPerTensorConst, SignedTernaryWeightPerTensorConst

    assert peers.brevitas_weight_quant("binary", "shipped") is SignedBinaryWeightPerTensorConst
    assert peers.brevitas_weight_quant("ternary", "shipped") is SignedTernaryWeightPerTensorConst
    with pytest.raises(ValueError, match="unknown"):
        peers.brevitas_weight_quant("quaternary", "shipped")


def test_verdict_says_why_a_row_is_not_level_and_smaller(bench):
    peer = {"method": "peer X", "accuracy": 0.80, "bytes": 1000}
    ok, why = bench.verdict({"accuracy": 0.81, "bytes": 900}, peer)
    assert ok is True and "smaller" in why
    ok, why = bench.verdict({"accuracy": 0.78, "bytes": 1100, "files": {"torchslim.json": 300}}, peer)
    assert ok is False and "2.00 points below peer X" in why and "100 bytes larger" in why and "300" in why
    assert bench.verdict({"accuracy": 0.8, "bytes": 1}, None)[0] is None


def test_goal_checks_read_torchslim_rows(bench):
    rows = [{"kind": "binary", "accuracy": 0.9, "drop_points": 2.0, "x_smaller": 26.0}]
    checks = bench.goal_checks({"binary": {"rows": rows}})
    by_goal = {c["claim"].split(":")[0]: c for c in checks}
    assert by_goal["fmnist-cnn binary"]["ok"] is True
    assert by_goal["fmnist-cnn ternary"]["ok"] is None  # missing rows are reported, not passed
    rows[0]["drop_points"] = 3.5
    assert {c["claim"].split(":")[0]: c for c in bench.goal_checks({"binary": {"rows": rows}})}["fmnist-cnn binary"][
        "ok"
    ] is False
