"""Toy models, toy data and quick configs of the contract suite, shared with its fresh-process loader.

Imported by the tests (tests/contract/conftest.py puts this folder on ``sys.path``) and by the
subprocess of ``test_artifacts.py`` that loads saved artifacts in a fresh interpreter.
"""

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import torchslim  # noqa: F401  (registers every technique)
from torchslim.core import DataSplits, TechniqueConfig
from torchslim.core.technique import TECHNIQUES


def registered_techniques() -> list[str]:
    """Every technique registered by torchslim (importing it registers them all); techniques that
    other test modules register for themselves (defined outside torchslim) are not part of the contract."""
    return [n for n in TECHNIQUES.names() if TECHNIQUES.config_type(n).__module__.startswith("torchslim.")]


QUICK: dict[str, dict[str, Any]] = {
    "magnitude_pruning": {"sparsity": 0.5, "train": {"epochs": 0}},
    "channel_pruning": {"ratio": 0.25, "train": {"epochs": 0}},
    "quantize": {"calibration_samples": 32},
    "kmeans_quant": {"bits": 3, "train": {"epochs": 1, "max_steps": 2}},
    "lottery": {"levels": 1, "controls": ["random"], "train": {"max_steps": 2}},
}
"""Per technique, the options that keep it fast; a technique not listed that trains gets
``train: {max_steps: 2}``, so a newly registered one is covered with no entry here."""


def quick_config(technique: str) -> TechniqueConfig:
    config_type = TECHNIQUES.config_type(technique)
    options = QUICK.get(technique)
    if options is None:
        options = {"train": {"max_steps": 2}} if "train" in config_type.field_names() else {}
    return config_type.from_dict(options)


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


TOYS = {"mlp": MLP, "cnn": CNN, "residual": Residual, "concat": Concat, "attention": Attention}


def toy_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 1, 8, 8, generator=g)
    y = torch.randint(0, 4, (96,), generator=g)
    loader = DataLoader(TensorDataset(x, y), batch_size=32)
    return DataSplits(train=loader, calibration=loader, validation=loader, test=loader, name="toy", num_classes=4)
