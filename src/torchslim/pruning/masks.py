"""Pruning masks as parametrizations: ``W_eff = W ⊙ M`` on every forward.

A mask is a boolean buffer held by a :class:`WeightMask` parametrization
(``torch.nn.utils.parametrize``), so it stays applied through fine-tuning: the optimizer updates
the underlying dense weight ``W`` (``parametrizations.weight.original``), while the layer always
computes with ``W ⊙ M``, and the gradient of a masked entry is zero (``d(W ⊙ M)/dW = M``). This is
how Han et al. 2015 ("Learning both weights and connections for efficient neural networks") keep
pruned connections dead during retraining.

`torchslim.io.save` bakes masks into the stored weights (zeros), and stores those tensors with a
sparse codec (bitmask or index, whichever is smaller), so bytes on disk reflect the sparsity.
Masked layers get ``sparse_kernel = False``: dense kernels still spend every MAC on the zeros, and
the energy model must not assume otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import torch
from torch import nn
from torch.nn.utils import parametrize

from torchslim.core.errors import ModelError
from torchslim.core.layer import mark_sparse_kernel
from torchslim.graph.surgery import bake_parametrization


class WeightMask(nn.Module):
    """Parametrization ``weight -> weight * mask`` with a boolean ``mask`` buffer of the weight's shape."""

    mask: torch.Tensor

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.detach().to(torch.bool).clone())

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask

    def extra_repr(self) -> str:
        total = self.mask.numel()
        kept = int(self.mask.sum())
        return f"shape={tuple(self.mask.shape)}, sparsity={1 - kept / max(total, 1):.4f}"


def _parametrizations(module: nn.Module) -> nn.ModuleDict:
    """The parametrization lists of a parametrized module (``module.parametrizations``)."""
    return cast(nn.ModuleDict, module.parametrizations)


def _mask_module(module: nn.Module, name: str) -> WeightMask | None:
    if not parametrize.is_parametrized(module, name):
        return None
    for p in cast(parametrize.ParametrizationList, _parametrizations(module)[name]):
        if isinstance(p, WeightMask):
            return p
    return None


def get_mask(module: nn.Module, name: str = "weight") -> torch.Tensor | None:
    """The boolean mask on ``module.<name>``, or None when it has none."""
    holder = _mask_module(module, name)
    return None if holder is None else holder.mask


def is_masked(module: nn.Module, name: str = "weight") -> bool:
    return _mask_module(module, name) is not None


def dense_weight(module: nn.Module, name: str = "weight") -> torch.Tensor:
    """The underlying (unmasked) tensor of ``module.<name>``."""
    if parametrize.is_parametrized(module, name):
        return cast(torch.Tensor, cast(parametrize.ParametrizationList, _parametrizations(module)[name]).original)
    return cast(torch.Tensor, getattr(module, name))


def apply_mask(module: nn.Module, mask: torch.Tensor, name: str = "weight") -> WeightMask:
    """Mask ``module.<name>`` with `mask` (True = keep). An existing mask is replaced in place,
    so optimizers holding the weight keep working. Marks the layer ``sparse_kernel = False``."""
    weight = getattr(module, name, None)
    if not isinstance(weight, torch.Tensor):
        raise ModelError(f"{type(module).__name__} has no tensor {name!r} to mask.")
    if tuple(mask.shape) != tuple(weight.shape):
        raise ModelError(f"Mask of shape {tuple(mask.shape)} does not fit {name} of shape {tuple(weight.shape)}.")
    holder = _mask_module(module, name)
    if holder is not None:
        holder.mask.copy_(mask.to(device=holder.mask.device, dtype=torch.bool))
    else:
        holder = WeightMask(mask.to(weight.device))
        parametrize.register_parametrization(module, name, holder)
    mark_sparse_kernel(module, False)
    return holder


def remove_mask(module: nn.Module, name: str = "weight") -> None:
    """Bake the mask into ``module.<name>`` (masked entries become zeros) and drop the parametrization.

    Safe on deep copies: other copies of the module keep their masks.
    """
    if not is_masked(module, name):
        return
    bake_parametrization(module, name)


def remove_masks(model: nn.Module) -> nn.Module:
    """Bake every mask of `model` into its weights, in place; return `model`."""
    for module in model.modules():
        if parametrize.is_parametrized(module):
            for name in list(_parametrizations(module).keys()):
                remove_mask(module, name)
    return model


def masked_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module, torch.Tensor]]:
    """``(name, module, mask)`` of every masked ``weight`` in `model`."""
    for name, module in model.named_modules():
        mask = get_mask(module)
        if mask is not None:
            yield name, module, mask


def mask_sparsity(model: nn.Module) -> dict[str, float]:
    """Fraction of masked-out entries per masked layer, plus ``"(total)"`` over all of them."""
    out: dict[str, float] = {}
    zeros = total = 0
    for name, _, mask in masked_layers(model):
        n = mask.numel()
        z = n - int(mask.sum())
        out[name] = z / n if n else 0.0
        zeros += z
        total += n
    out["(total)"] = zeros / total if total else 0.0
    return out
