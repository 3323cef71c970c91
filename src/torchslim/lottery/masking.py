"""The masks of a lottery level: which layers are pruned, magnitude masks per level, random control masks.

Level ``L`` keeps ``(1 - p)^L`` of a layer's weights (``scope="layer"``) or of the pooled weights
of all layers but the output layer (``scope="global"``); the output layer keeps ``(1 - p_out)^L``.
The masks come from :class:`torchslim.pruning.MagnitudePruner` on the trained weights of level
``L - 1`` with its masks applied, so a pruned weight stays pruned (masks only shrink) and each
level removes ``p`` of what is left.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn

from torchslim.core.errors import ModelError, TargetError
from torchslim.core.targets import Targets
from torchslim.pruning.masks import apply_mask, remove_masks
from torchslim.pruning.unstructured import MagnitudePruner, unsupported_reason

PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.modules.conv._ConvNd)


def prunable_layers(model: nn.Module, targets: Targets | None) -> list[str]:
    """Names of the Linear / Conv layers (of `targets`, when given) whose weight can be masked, in module order."""
    candidates = [
        name
        for name, m in model.named_modules()
        if name and isinstance(m, PRUNABLE_TYPES) and unsupported_reason(m) is None
    ]
    selected = [name for name, _ in (targets or Targets()).resolve(model, candidates=candidates)]
    if not selected:
        raise TargetError(
            f"lottery: {type(model).__name__} has no Linear or Conv layer with a floating-point weight to prune"
            + (" among the targets." if targets is not None else ".")
        )
    return selected


def output_layer_of(layers: list[str], requested: str | None) -> str:
    """The output layer: `requested` (which must be one of `layers`) or the last prunable layer."""
    if requested is None:
        return layers[-1]
    if requested not in layers:
        raise TargetError(f"LotteryConfig.output_layer={requested!r} is not one of the pruned layers {layers}.")
    return requested


def kept_fraction(level: int, rate: float) -> float:
    """``(1 - rate)^level``: what a layer (or the global pool) keeps after `level` levels."""
    return (1.0 - rate) ** level


def level_masks(
    model: nn.Module,
    layers: list[str],
    *,
    level: int,
    rate: float,
    output_rate: float,
    output_layer: str,
    scope: str,
) -> dict[str, torch.Tensor]:
    """The keep-masks of `level`, ranked on `model`'s (trained, masked) weights; `model` is not changed."""
    modules = [(name, model.get_submodule(name)) for name in layers]
    per_layer = {output_layer: 1.0 - kept_fraction(level, output_rate)} if len(layers) > 1 else {}
    pruner = MagnitudePruner(modules, scope=scope, criterion="l1", per_layer=per_layer)
    sparsity = 1.0 - kept_fraction(level, rate if len(layers) > 1 else output_rate)
    return {name: mask.detach().cpu().clone() for name, mask in pruner.compute_masks(sparsity).items()}


def random_masks(masks: Mapping[str, torch.Tensor], *, seed: int) -> dict[str, torch.Tensor]:
    """Random keep-masks with exactly as many kept weights per layer as `masks` (the random-pruning control)."""
    generator = torch.Generator().manual_seed(int(seed))
    out: dict[str, torch.Tensor] = {}
    for name, mask in masks.items():
        kept = int(mask.sum())
        flat = torch.zeros(mask.numel(), dtype=torch.bool)
        flat[torch.randperm(mask.numel(), generator=generator)[:kept]] = True
        out[name] = flat.reshape(mask.shape)
    return out


def reinitialize(model: nn.Module, *, seed: int) -> nn.Module:
    """Fresh random weights for every module with ``reset_parameters`` (PyTorch's own initialisers),
    drawn from `seed` without touching the global RNG; in place, returns `model`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        for module in model.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
    return model


def unmasked_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` with any masks baked in (the architecture every branch is built from)."""
    return remove_masks(copy.deepcopy(model))


def build_branch(
    template: nn.Module, state: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]
) -> nn.Module:
    """A copy of `template` holding `state` (plain keys) with `masks` applied as parametrizations."""
    model = copy.deepcopy(template)
    try:
        model.load_state_dict(dict(state), strict=True)
    except RuntimeError as exc:
        raise ModelError(f"lottery: saved weights do not fit {type(template).__name__}: {exc}") from exc
    for name, mask in masks.items():
        apply_mask(model.get_submodule(name), mask)
    return model


def mask_counts(masks: Mapping[str, torch.Tensor], sizes: Mapping[str, int]) -> dict[str, int]:
    """Kept weights per layer: the mask's count, or the whole layer when it has no mask."""
    return {name: int(masks[name].sum()) if name in masks else size for name, size in sizes.items()}
