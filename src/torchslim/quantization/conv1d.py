"""GPT-2-style ``Conv1D`` layers as ``nn.Linear`` (so the quantizer treats them as linear layers), and
tied weights (one tensor read by several layers: an embedding and its LM head).

``transformers.pytorch_utils.Conv1D`` computes ``x @ W + b`` with ``W`` of shape ``[in, out]``: exactly
``nn.Linear`` with weight ``W.T``. It is recognized by class name and shape, without importing
``transformers``.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils import parametrize

from torchslim.graph.surgery import set_module


def is_conv1d(module: nn.Module) -> bool:
    """True for a GPT-2-style ``Conv1D`` (weight ``[in, out]``, attribute ``nf`` = out)."""
    weight = getattr(module, "weight", None)
    return (
        type(module).__name__ == "Conv1D"
        and isinstance(weight, Tensor)
        and weight.dim() == 2
        and getattr(module, "nf", None) == weight.shape[1]
    )


def conv1d_as_linear(module: nn.Module) -> nn.Linear:
    """The ``nn.Linear`` computing what `module` (a ``Conv1D``) computes (same device and dtype)."""
    weight = module.weight
    assert isinstance(weight, Tensor)
    bias = getattr(module, "bias", None)
    n_in, n_out = weight.shape
    linear = nn.Linear(n_in, n_out, bias=bias is not None, device=weight.device, dtype=weight.dtype)
    linear.weight.data.copy_(weight.detach().t())
    if isinstance(bias, Tensor):
        linear.bias.data.copy_(bias.detach())
    linear.train(module.training)
    return linear


def replace_conv1d(model: nn.Module, names: list[str] | None = None) -> list[str]:
    """Replace every ``Conv1D`` of `model` (or those named in `names`) by its ``nn.Linear``, in place;
    returns the names replaced."""
    found = [n for n, m in model.named_modules() if n and is_conv1d(m) and (names is None or n in names)]
    for name in found:
        set_module(model, name, conv1d_as_linear(model.get_submodule(name)))
    return found


def tied_groups(named: list[tuple[str, nn.Module]]) -> list[list[str]]:
    """Groups (of two or more) of the given layers whose ``weight`` is the same tensor.

    A parametrized weight (a pruning mask) is computed anew at each access, so its stored
    ``original`` is compared instead; the tensors are held while comparing, so no id is reused.
    """
    groups: dict[int, list[str]] = {}
    held: list[Tensor] = []
    for name, module in named:
        if parametrize.is_parametrized(module, "weight"):
            container = getattr(module, "parametrizations", {})
            weight = getattr(container["weight"], "original", None)
        else:
            weight = getattr(module, "weight", None)
        if isinstance(weight, Tensor):
            held.append(weight)
            groups.setdefault(id(weight), []).append(name)
    return [g for g in groups.values() if len(g) > 1]


__all__ = ["conv1d_as_linear", "is_conv1d", "replace_conv1d", "tied_groups"]
