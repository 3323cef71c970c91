"""Per-layer sensitivity: curves, the unchanged model, JSON + PNG outputs, budgets."""

from __future__ import annotations

import json

import pytest
import torch

from torchslim.core import Targets
from torchslim.core.errors import ConfigError
from torchslim.pruning import SensitivityResult, sensitivity


def _trained_mlp(toys):
    from torchslim.train import TrainConfig, train

    data = toys.blobs(256)
    model = toys.seeded(toys.MLP)
    train(model, toys.make_loader(data, 32, shuffle=True), config=TrainConfig(epochs=6, lr=2e-2), quiet=True)
    return model.eval(), toys.make_loader(data, 64)


def test_unstructured_curves_start_at_the_baseline_and_fall_at_high_sparsity(toys, tmp_path):
    model, loader = _trained_mlp(toys)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = sensitivity(model, loader, sparsities=[0.0, 0.5, 0.99])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "the model is not changed"
    assert set(result.curves) == {"fc1", "fc2", "classifier"}
    assert result.baseline > 0.8 and result.samples == 256
    for layer, accs in result.curves.items():
        assert accs[0] == pytest.approx(result.baseline), layer
        assert accs[2] < result.baseline - 0.1, layer  # 99% of one layer gone hurts
    assert result.params["fc1"] == 16 * 32
    paths = result.save(tmp_path / "sens")
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(paths["json"].read_text())
    assert SensitivityResult.from_dict(data) == result


def test_channel_sensitivity_prunes_each_group_physically(toys):
    model = toys.seeded(toys.CNN).eval()
    loader = toys.make_loader(toys.images(64), 32)
    x = next(iter(loader))[0][:2]
    result = sensitivity(model, loader, kind="channels", sparsities=[0.0, 0.5], example_input=x)
    assert set(result.curves) == {"conv1", "conv2"}
    assert all(c[0] == result.baseline for c in result.curves.values())
    with pytest.raises(ConfigError, match="kind"):
        sensitivity(model, loader, kind="heads")


def test_targets_and_bad_sparsities(toys):
    model, loader = _trained_mlp(toys)
    result = sensitivity(model, loader, sparsities=[0.5], targets=Targets(names=["fc2"]))
    assert list(result.curves) == ["fc2"]
    with pytest.raises(ConfigError, match="1.0"):
        sensitivity(model, loader, sparsities=[0.5, 1.0])


def test_budget_and_ranking_from_a_result():
    result = SensitivityResult(
        kind="unstructured",
        criterion="l1",
        sparsities=[0.25, 0.5, 0.75, 0.9],
        baseline=0.90,
        curves={"a": [0.90, 0.89, 0.85, 0.70], "b": [0.90, 0.90, 0.90, 0.89], "c": [0.80, 0.90, 0.90, 0.90]},
        params={"a": 10, "b": 10, "c": 10},
        samples=100,
    )
    assert result.max_sparsity(0.02) == {"a": 0.5, "b": 0.9, "c": 0.0}
    assert [k for k, _ in result.ranking()] == ["a", "b", "c"]
    assert [k for k, _ in result.ranking(at=0.25)][0] == "c"
    assert result.drops()["a"][-1] == pytest.approx(0.2)
