"""Shared toys for the training-loop tests: a tiny MLP and a learnable random classification task."""

from __future__ import annotations

import pytest
import torch
from torch import nn


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny models run far faster on one thread than on two contended ones; restore afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_model(seed: int = 1, *, dropout: float = 0.1, classes: int = 3) -> nn.Module:
    """A fresh MLP with weights fixed by `seed` (independent of the global RNG afterwards)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, classes))


def make_dataset(n: int = 192, *, seed: int = 0, classes: int = 3) -> torch.utils.data.TensorDataset:
    """Gaussian inputs labelled by a fixed random linear teacher: learnable by the MLP."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    teacher = torch.randn(8, classes, generator=g)
    return torch.utils.data.TensorDataset(x, (x @ teacher).argmax(1))


def make_loader(n: int = 192, batch_size: int = 32, *, shuffle: bool = True) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(make_dataset(n), batch_size=batch_size, shuffle=shuffle)


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def toys():
    """The helpers above, as a fixture (test modules need not import conftest by name)."""
    import types

    return types.SimpleNamespace(model=make_model, dataset=make_dataset, loader=make_loader, same_weights=same_weights)
