"""Artifacts store and restore a compressed layer only through the layer contract, and io owns no
plan registry (replays live in torchslim.core.plans)."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import torch
from torch import nn

import torchslim.io
from torchslim.core.plans import PLAN_REPLAYS, append_plan_entry, model_plan, register_plan_replay
from torchslim.io import load, save


def _fake_layer() -> types.ModuleType:
    name = "torchslim_tests_fake_layer"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "measure" / "fake_layer.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def fake_model(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    linear = nn.Linear(12, 5)
    return nn.Sequential(_fake_layer().FakeCompressedLinear.from_linear(linear, bits=4), nn.ReLU(), nn.Linear(5, 2))


def test_contract_only_layer_round_trips(tmp_path: Path) -> None:
    model = fake_model(0)
    save(model, tmp_path / "a")
    manifest = json.loads((tmp_path / "a" / "torchslim.json").read_text())
    assert manifest["tensors"] == {"0": {"codec": "fake-int", "bits": 4}}  # its stored_state's codec, as given
    fresh = fake_model(1)  # same structure, other codes and scale
    x = torch.randn(3, 12)
    assert not torch.equal(fresh(x), model(x))
    again = load(tmp_path / "a", model=fresh)
    assert torch.equal(again[0].codes, model[0].codes) and torch.equal(again[0].scale, model[0].scale)
    assert torch.equal(again(x), model(x))


def test_plan_entries_replay_through_core_plans(tmp_path: Path) -> None:
    assert not hasattr(torchslim.io, "register_plan_replay") and not hasattr(torchslim.io, "PLAN_REPLAYS")

    @register_plan_replay("test_io_append_tanh")
    def replay(model: nn.Module, entry: dict[str, object]) -> nn.Module:
        return nn.Sequential(*model, nn.Tanh())

    assert "test_io_append_tanh" in PLAN_REPLAYS
    model = nn.Sequential(nn.Linear(3, 3))
    model = nn.Sequential(*model, nn.Tanh())
    append_plan_entry(model, {"kind": "test_io_append_tanh"})
    save(model, tmp_path / "p")
    again = load(tmp_path / "p", model=nn.Sequential(nn.Linear(3, 3)))
    assert isinstance(again[1], nn.Tanh)
    assert model_plan(again) == [{"kind": "test_io_append_tanh"}]
    x = torch.randn(2, 3)
    assert torch.equal(again(x), model(x))
