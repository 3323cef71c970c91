"""Hand-made graphs for the couplings that break channel pruning: concat then split, grouped and
depthwise convolutions, a module called twice, tied weights, and bare `nn.Parameter`s coupled to
channels (position embedding, class token, layer-scale vector)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def _img(channels: int = 3, size: int = 16) -> torch.Tensor:
    return torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(0))


class ConcatSplit(nn.Module):
    """Two branches concatenated, then split back into halves that feed different convs."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.c = nn.Conv2d(8, 8, 3, padding=1)
        self.d = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(torch.cat([self.a(x), self.b(x)], dim=1)))
        left, right = torch.split(y, 8, dim=1)
        z = torch.cat([self.c(left), self.d(right)], dim=1)
        return self.head(z.mean(dim=(2, 3)))


class GroupedDepthwise(nn.Module):
    """A grouped 3x3 conv (4 groups) followed by a depthwise 3x3 conv and a pointwise conv."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.bn0 = nn.BatchNorm2d(16)
        self.grouped = nn.Conv2d(16, 32, 3, padding=1, groups=4)
        self.bn1 = nn.BatchNorm2d(32)
        self.dw = nn.Conv2d(32, 32, 3, padding=1, groups=32)
        self.bn2 = nn.BatchNorm2d(32)
        self.pw = nn.Conv2d(32, 16, 1)
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn0(self.stem(x)))
        x = torch.relu(self.bn1(self.grouped(x)))
        x = torch.relu(self.bn2(self.dw(x)))
        return self.head(self.pw(x).mean(dim=(2, 3)))


class Depthwise(nn.Module):
    """MobileNet-style inverted residual: expand 1x1, depthwise 3x3, project 1x1, residual add."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.expand = nn.Conv2d(8, 32, 1)
        self.dw = nn.Conv2d(32, 32, 3, padding=1, groups=32)
        self.bn = nn.BatchNorm2d(32)
        self.project = nn.Conv2d(32, 8, 1)
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.project(torch.relu(self.bn(self.dw(torch.relu(self.expand(x))))))
        return self.head((x + y).mean(dim=(2, 3)))


class SharedTwice(nn.Module):
    """One conv block called twice (weights shared across both calls)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.shared = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 16, 3, padding=1))
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = x + self.shared(x)
        x = x + self.shared(x)
        return self.head(x.mean(dim=(2, 3)))


class TiedLM(nn.Module):
    """A tiny language model whose output layer shares the embedding's weight (tied weights)."""

    def __init__(self, vocab: int = 64, dim: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.fc1 = nn.Linear(dim, 64)
        self.fc2 = nn.Linear(64, dim)
        self.norm = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        self.lm_head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.embed(ids)
        h = h + self.fc2(torch.relu(self.fc1(h)))
        return self.lm_head(self.norm(h))


class TiedMLP(nn.Module):
    """Two linear layers sharing one weight tensor (tied but not through an embedding)."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(16, 32)
        self.a = nn.Linear(32, 32)
        self.b = nn.Linear(32, 32)
        self.b.weight = self.a.weight
        self.out = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.inp(x))
        return self.out(torch.relu(self.a(h)) + torch.relu(self.b(h)))


class PatchTokens(nn.Module):
    """A ViT-style model built by hand: patch conv, class token, position embedding and layer-scale
    vectors, all bare `nn.Parameter`s coupled to the hidden channels."""

    def __init__(self, dim: int = 32, patches: int = 16) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, stride=4)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.1)
        self.pos_embed = nn.Parameter(torch.randn(1, patches + 1, dim) * 0.1)
        self.fc1 = nn.Linear(dim, 64)
        self.fc2 = nn.Linear(64, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 0.5))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], dim=1) + self.pos_embed
        t = t + self.gamma * self.fc2(torch.relu(self.fc1(t)))
        return self.head(self.norm(t).mean(dim=1))


class LayerScaleCNN(nn.Module):
    """ConvNeXt-like: a per-channel layer-scale vector multiplies a conv's output before the residual add."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.dw = nn.Conv2d(16, 16, 7, padding=3, groups=16)
        self.pw1 = nn.Conv2d(16, 64, 1)
        self.pw2 = nn.Conv2d(64, 16, 1)
        self.scale = nn.Parameter(torch.full((1, 16, 1, 1), 0.3))
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = x + self.scale * self.pw2(torch.relu(self.pw1(self.dw(x))))
        return self.head(x.mean(dim=(2, 3)))


def _ids() -> torch.Tensor:
    return torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(0))


HAND_ARCHS: dict[str, tuple[str, Callable[[], tuple[nn.Module, Any]]]] = {
    "concat-split": ("hand-made", lambda: (ConcatSplit().eval(), _img())),
    "grouped-depthwise": ("hand-made", lambda: (GroupedDepthwise().eval(), _img())),
    "inverted-residual": ("hand-made", lambda: (Depthwise().eval(), _img())),
    "shared-module": ("hand-made", lambda: (SharedTwice().eval(), _img())),
    "tied-embedding": ("hand-made", lambda: (TiedLM().eval(), _ids())),
    "tied-linear": ("hand-made", lambda: (TiedMLP().eval(), torch.randn(2, 16))),
    "patch-tokens": ("hand-made", lambda: (PatchTokens().eval(), _img())),
    "layer-scale": ("hand-made", lambda: (LayerScaleCNN().eval(), _img())),
}


def _builtin(name: str) -> Callable[[], tuple[nn.Module, Any]]:
    def build() -> tuple[nn.Module, Any]:
        from torchslim.models import build_model, example_input

        model = build_model(name, pretrained=False, seed=0)
        return model, example_input(model, batch_size=2)

    return build


BUILTIN_ARCHS: dict[str, tuple[str, Callable[[], tuple[nn.Module, Any]]]] = {
    name: ("torchslim built-in", _builtin(name)) for name in ("lenet-300-100", "lenet5", "fmnist-cnn", "fmnist-resnet")
}
