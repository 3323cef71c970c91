"""Toy models and data shared by tests/pruning and tests/graph."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def seeded(factory, seed: int = 0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


class MLP(nn.Module):
    def __init__(self, d_in: int = 16, hidden: int = 32, classes: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, hidden)
        self.classifier = nn.Linear(hidden, classes)

    def forward(self, x):
        return self.classifier(self.act(self.fc2(self.act(self.fc1(x)))))


class CNN(nn.Module):
    """conv-bn-relu x2, pool, linear; 1x8x8 inputs."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(16, classes)

    def forward(self, x):
        x = self.act(self.bn1(self.conv1(x)))
        x = self.act(self.bn2(self.conv2(x)))
        return self.classifier(self.pool(x).flatten(1))


class ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(out)))


class ResNet(nn.Module):
    """stem -> 2 residual blocks (16 ch) -> 1x1 conv to 32 -> pool -> classifier."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(16)
        self.block1 = ResBlock(16)
        self.block2 = ResBlock(16)
        self.head = nn.Conv2d(16, 32, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(32, classes)

    def forward(self, x):
        x = torch.relu(self.stem_bn(self.stem(x)))
        x = self.block2(self.block1(x))
        x = torch.relu(self.head(x))
        return self.classifier(self.pool(x).flatten(1))


class ConcatNet(nn.Module):
    """Two branches concatenated along channels, then a conv reading both."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 6, 3, padding=1)
        self.b = nn.Conv2d(1, 10, 3, padding=1)
        self.mix = nn.Conv2d(16, 8, 1)
        self.classifier = nn.Linear(8, 3)

    def forward(self, x):
        x = torch.cat([torch.relu(self.a(x)), torch.relu(self.b(x))], dim=1)
        x = torch.relu(self.mix(x))
        return self.classifier(x.mean(dim=(2, 3)))


class GroupedNet(nn.Module):
    """A grouped conv (groups=4) and a depthwise conv between pointwise convs."""

    def __init__(self) -> None:
        super().__init__()
        self.pw1 = nn.Conv2d(1, 16, 1)
        self.grouped = nn.Conv2d(16, 16, 3, padding=1, groups=4)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.bn = nn.BatchNorm2d(16)
        self.pw2 = nn.Conv2d(16, 8, 1)
        self.classifier = nn.Linear(8, 3)

    def forward(self, x):
        x = torch.relu(self.pw1(x))
        x = torch.relu(self.grouped(x))
        x = torch.relu(self.bn(self.dw(x)))
        x = torch.relu(self.pw2(x))
        return self.classifier(x.mean(dim=(2, 3)))


class Detached(nn.Module):
    """Its output does not depend on its parameters through autograd."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.classifier = nn.Linear(4, 2)

    def forward(self, x):
        return self.classifier(self.fc(x)).detach()


def tiny_bert(num_heads: int = 4, hidden: int = 32, layers: int = 2, ffn: int = 64) -> nn.Module:
    """A randomly initialised 2-layer BERT encoder wrapped to return a pooled [B, hidden] vector."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=50,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=num_heads,
        intermediate_size=ffn,
        max_position_embeddings=16,
        attn_implementation="sdpa",
    )

    class Pooled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = BertModel(config, add_pooling_layer=False)
            self.classifier = nn.Linear(hidden, 3)

        def forward(self, input_ids, attention_mask):
            h = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return self.classifier(h.mean(dim=1))

    return seeded(Pooled)


def bert_input(batch: int = 2, length: int = 8) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "input_ids": torch.randint(0, 50, (batch, length), generator=g),
        "attention_mask": torch.ones(batch, length, dtype=torch.long),
    }


def blobs(n: int = 256, d: int = 16, classes: int = 4, seed: int = 0) -> TensorDataset:
    """Gaussian inputs labelled by a fixed random linear teacher (learnable by the MLP)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    teacher = torch.randn(d, classes, generator=g)
    return TensorDataset(x, (x @ teacher).argmax(1))


def images(n: int = 128, classes: int = 4, seed: int = 0) -> TensorDataset:
    """1x8x8 images whose class is the brightest quadrant."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=g) * 0.3
    y = torch.randint(0, classes, (n,), generator=g)
    for i in range(n):
        r, c = divmod(int(y[i]), 2)
        x[i, 0, r * 4 : (r + 1) * 4, c * 4 : (c + 1) * 4] += 1.0
    return TensorDataset(x, y)


def make_loader(dataset: TensorDataset, batch_size: int = 32, shuffle: bool = False) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle)


def state_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k]) for k in sa)
