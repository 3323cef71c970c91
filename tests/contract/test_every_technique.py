"""Registry-driven contract: every registered technique on a handful of toy models.

For each technique: its default config round-trips through dict and YAML; on an MLP, a CNN, a
residual net, a concat net and an attention net it either runs (output shape unchanged, report
numbers consistent) or refuses with a torchslim error naming the problem; the input model is never
modified.
"""

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import torchslim as ts
from torchslim.core import DataSplits, Recipe, Step, TorchSlimError
from torchslim.core.technique import TECHNIQUES

QUICK = {
    "finetune": {"max_steps": 2},
    "magnitude_pruning": {"sparsity": 0.5, "finetune_epochs": 0},
    "channel_pruning": {"ratio": 0.25, "finetune_epochs": 0},
    "quantize": {"calibration_samples": 32},
    "distill": {"max_steps": 2},
}


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU())
        self.classifier = nn.Linear(16, 4)

    def forward(self, x):
        return self.classifier(self.body(x))


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(16, 4)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.block = nn.Sequential(
            nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1)
        )
        self.classifier = nn.Linear(8, 4)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        h = torch.relu(h + self.block(h))
        return self.classifier(h.mean(dim=(2, 3)))


class Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 6, 3, padding=1)
        self.b = nn.Conv2d(1, 10, 1)
        self.mix = nn.Conv2d(16, 8, 3, padding=1)
        self.classifier = nn.Linear(8, 4)

    def forward(self, x):
        h = torch.cat([torch.relu(self.a(x)), torch.relu(self.b(x))], dim=1)
        return self.classifier(torch.relu(self.mix(h)).mean(dim=(2, 3)))


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(8, 16)
        self.attn = nn.MultiheadAttention(16, num_heads=4, batch_first=True)
        self.norm = nn.LayerNorm(16)
        self.ffn = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 16))
        self.classifier = nn.Linear(16, 4)

    def forward(self, x):
        h = self.embed(x.reshape(x.shape[0], 8, 8))
        a, _ = self.attn(h, h, h, need_weights=False)
        h = self.norm(h + a)
        h = h + self.ffn(h)
        return self.classifier(h.mean(dim=1))


EXPECTED_REFUSALS: dict[tuple[str, str], str] = {}
"""(technique, toy) -> text of the error that technique must raise on that toy (none today)."""

TOYS = {"mlp": MLP, "cnn": CNN, "residual": Residual, "concat": Concat, "attention": Attention}


def toy_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 1, 8, 8, generator=g)
    y = torch.randint(0, 4, (96,), generator=g)
    loader = DataLoader(TensorDataset(x, y), batch_size=32)
    return DataSplits(train=loader, calibration=loader, validation=loader, test=loader, name="toy", num_classes=4)


@pytest.mark.parametrize("technique", TECHNIQUES.names())
def test_config_round_trip(technique):
    config_type = TECHNIQUES.config_type(technique)
    config = config_type.from_dict(QUICK.get(technique, {}))
    assert config_type.from_dict(config.to_dict()) == config
    recipe = Recipe([Step(config)])
    assert Recipe.from_yaml(recipe.to_yaml()) == recipe


@pytest.mark.parametrize("toy", sorted(TOYS))
@pytest.mark.parametrize("technique", TECHNIQUES.names())
def test_technique_on_toy_model(technique, toy):
    torch.manual_seed(0)
    model = TOYS[toy]().eval()
    original = copy.deepcopy(model.state_dict())
    data = toy_data()
    x = next(iter(data.test))[0][:4]
    config = TECHNIQUES.config_type(technique).from_dict(QUICK.get(technique, {}))
    try:
        result = ts.compress(model, data, recipe=Recipe([Step(config)]), repeats=1, quiet=True, runtime="pytorch")
    except TorchSlimError as exc:
        assert (technique, toy) in EXPECTED_REFUSALS, f"{technique} refused {toy}: {exc}"
        assert EXPECTED_REFUSALS[(technique, toy)] in str(exc)
        return
    finally:
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in original.items()), "input model modified"
    with torch.no_grad():
        out = result.model(x)
    assert out.shape == (4, 4)
    before, after = result.report.before, result.report.after
    assert after["params"] <= before["params"]
    assert after["nonzero_params"] <= after["params"]
    # quantize's outlier channel splitting repeats at most 1/16 of a Linear's input channels (int8 MACs)
    assert after["macs"] <= before["macs"] * (1 + 1 / 16 if technique == "quantize" else 1.0)
    assert after["bytes"] > 0 and 0.0 <= after["accuracy"] <= 1.0
    assert result.report.steps[0]["technique"] == technique
