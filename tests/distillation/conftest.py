"""Tiny teachers and students for the distillation tests (CNN with a stage of blocks, MLP, tiny BERT)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from torch import nn


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run far faster on one thread than on two contended ones; restore afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Block(nn.Module):
    """A residual 3x3 conv block; `stride`/`out_channels` make it change the shape."""

    def __init__(self, channels: int, out_channels: int | None = None, stride: int = 1) -> None:
        super().__init__()
        out_channels = out_channels or channels
        self.conv = nn.Conv2d(channels, out_channels, 3, stride=stride, padding=1)
        self.act = nn.ReLU()
        self.skip = (
            nn.Conv2d(channels, out_channels, 1, stride=stride)
            if (stride != 1 or out_channels != channels)
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x)) + self.skip(x)


class ToyCNN(nn.Module):
    """stem -> ``blocks`` (a Sequential: one shape-changing block, then `depth - 1` plain ones) -> head."""

    def __init__(self, width: int = 8, depth: int = 4, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU())
        self.blocks = nn.Sequential(Block(width, 2 * width, stride=2), *[Block(2 * width) for _ in range(depth - 1)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.pool(self.blocks(self.stem(x)))))


def seeded(factory, seed: int = 0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


def image_loader(n: int = 64, batch_size: int = 16, *, classes: int = 10, seed: int = 0, size: int = 8):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, size, size, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch_size, shuffle=False)


def tiny_bert(layers: int = 4, hidden: int = 16, heads: int = 2, classes: int = 3, seed: int = 0):
    transformers = pytest.importorskip("transformers")
    from torchslim.models import TextClassifier

    config = transformers.BertConfig(
        vocab_size=40,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * hidden,
        max_position_embeddings=32,
    )
    return seeded(lambda: TextClassifier(transformers.BertModel(config), classes), seed).eval()


def token_loader(n: int = 16, batch_size: int = 8, *, seq: int = 10, pad_from: int = 7, classes: int = 3):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 40, (n, seq), generator=g)
    mask = torch.ones(n, seq, dtype=torch.long)
    mask[:, pad_from:] = 0
    y = torch.randint(0, classes, (n,), generator=g)
    return [
        ({"input_ids": ids[i : i + batch_size], "attention_mask": mask[i : i + batch_size]}, y[i : i + batch_size])
        for i in range(0, n, batch_size)
    ]


def forward_hook_count(*models: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for model in models for m in model.modules())


@pytest.fixture
def toys():
    import types

    return types.SimpleNamespace(
        ToyCNN=ToyCNN,
        Block=Block,
        seeded=seeded,
        image_loader=image_loader,
        tiny_bert=tiny_bert,
        token_loader=token_loader,
        hook_count=forward_hook_count,
    )
