"""`training_scope`: threads and frozen parameters for one training step of a technique."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from torchslim.core.targets import Targets


@contextlib.contextmanager
def training_scope(
    model: nn.Module, *, targets: Targets | None = None, threads: int | None = None
) -> Iterator[list[nn.Parameter]]:
    """Set the torch thread count and freeze trainable parameters outside `targets` for one training
    step of a technique; restore both afterwards, also on errors. Yields the frozen parameters."""
    frozen: list[nn.Parameter] = []
    if targets is not None:
        keep: set[int] = set()
        for _, module in targets.resolve(model):
            keep.update(id(p) for p in module.parameters())
        frozen = [p for p in model.parameters() if p.requires_grad and id(p) not in keep]
    previous = torch.get_num_threads()
    try:
        for p in frozen:
            p.requires_grad_(False)
        if threads:
            torch.set_num_threads(threads)
        yield frozen
    finally:
        torch.set_num_threads(previous)
        for p in frozen:
            p.requires_grad_(True)
