"""Toy models and data for the quantization tests (random weights; CPU; a few ms each)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from torchslim.core import Context, DataSplits


class ToyCNN(nn.Module):
    """conv-bn-relu-pool, conv-relu-pool, fc-relu, classifier: the shape of fmnist-cnn, smaller."""

    def __init__(self, bn: bool = True) -> None:
        super().__init__()
        layers = [("conv1", nn.Conv2d(1, 8, 3, padding=1))]
        if bn:
            layers.append(("bn1", nn.BatchNorm2d(8)))
        layers += [
            ("relu1", nn.ReLU()),
            ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(8, 16, 3, padding=1)),
            ("relu2", nn.ReLU()),
            ("pool2", nn.MaxPool2d(2)),
        ]
        self.features = nn.Sequential(OrderedDict(layers))
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(16 * 4 * 4, 32)
        self.relu = nn.ReLU()
        self.classifier = nn.Linear(32, 10)

    def forward(self, x):
        return self.classifier(self.relu(self.fc(self.flatten(self.features(x)))))


class SelfAttention(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x):
        q, k, v = self.query(x), self.key(x), self.value(x)
        att = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
        return self.out(att @ v)


class ToyTransformer(nn.Module):
    """Embedding, one attention block with a GELU MLP, mean pooling: a Linear-heavy model."""

    def __init__(self, vocab: int = 50, dim: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.attn = SelfAttention(dim)
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.down = nn.Linear(4 * dim, dim)

    def forward(self, input_ids):
        h = self.embed(input_ids)
        h = self.norm(h + self.attn(h))
        h = h + self.down(self.act(self.up(h)))
        return h.mean(dim=1)


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return model


def make_cnn(bn: bool = True, seed: int = 0) -> ToyCNN:
    torch.manual_seed(seed)
    return randomize_bn(ToyCNN(bn=bn)).eval()


def image_batches(n: int = 256, batch: int = 64, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 16, 16, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return [(x[i : i + batch], y[i : i + batch]) for i in range(0, n, batch)]


def token_batches(
    n: int = 64, batch: int = 16, seq: int = 12, seed: int = 2
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 50, (n, seq), generator=g)
    return [(ids[i : i + batch], torch.zeros(len(ids[i : i + batch]), dtype=torch.long)) for i in range(0, n, batch)]


def context_for(batches, example=None, train=None) -> Context:
    return Context(
        data=DataSplits(train=train, calibration=batches, validation=batches, test=batches), example_input=example
    )
