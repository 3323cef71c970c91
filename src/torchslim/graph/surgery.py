"""Module surgery: find, replace and resize submodules by qualified name.

Small helpers shared by pruning (physical channel removal), quantization (swapping layers for
quantized ones) and BN folding. Every function names the layer at fault when it fails.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from torchslim.core.errors import ModelError


def get_module(model: nn.Module, name: str) -> nn.Module:
    """The submodule called `name` (``""`` is the model itself); `ModelError` naming it otherwise.

    No "did you mean": names reach here from graphs and recorded plans, not from what the user typed
    (user-typed names are checked by `Targets`, which suggests close matches).
    """
    if name == "":
        return model
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise ModelError(f"{type(model).__name__} has no layer {name!r}.") from None


def parent_of(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """``(parent module, attribute name)`` of the submodule `name`."""
    if not name:
        raise ModelError("The model itself has no parent module.")
    parent_name, _, attr = name.rpartition(".")
    return get_module(model, parent_name), attr


def set_module(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """Replace the submodule `name` by `new`; return the module that was there."""
    old = get_module(model, name)
    parent, attr = parent_of(model, name)
    if isinstance(parent, (nn.Sequential, nn.ModuleList)) and attr.isdigit():
        parent[int(attr)] = new
    elif isinstance(parent, nn.ModuleDict):
        parent[attr] = new
    else:
        setattr(parent, attr, new)
    return old


def replace_modules(
    model: nn.Module,
    predicate: Callable[[str, nn.Module], bool],
    factory: Callable[[str, nn.Module], nn.Module],
) -> list[str]:
    """Replace every submodule for which ``predicate(name, module)`` holds by ``factory(name, module)``.

    Returns the replaced names. Children of a replaced module are not visited.
    """
    chosen: list[str] = []
    for name, module in list(model.named_modules()):
        if not name or any(name.startswith(c + ".") for c in chosen):
            continue
        if predicate(name, module):
            chosen.append(name)
    for name in chosen:
        set_module(model, name, factory(name, get_module(model, name)))
    return chosen


def named_leaf_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """``(name, module)`` of the modules that have no children (in model order)."""
    for name, module in model.named_modules():
        if name and not any(True for _ in module.children()):
            yield name, module


def module_names(model: nn.Module) -> dict[int, str]:
    """``id(module) -> qualified name`` for every submodule (the first name of a shared module)."""
    out: dict[int, str] = {}
    for name, module in model.named_modules():
        out.setdefault(id(module), name)
    return out


def select_dim(tensor: torch.Tensor, dim: int, keep: list[int]) -> torch.Tensor:
    """``tensor`` restricted to the indices `keep` along `dim` (a contiguous copy)."""
    index = torch.as_tensor(keep, dtype=torch.long, device=tensor.device)
    return torch.index_select(tensor, dim, index).contiguous()


def set_parameter(module: nn.Module, name: str, value: torch.Tensor, *, requires_grad: bool | None = None) -> None:
    """Replace parameter `name` of `module` by a new `nn.Parameter` holding `value`."""
    old = getattr(module, name, None)
    grad = old.requires_grad if isinstance(old, torch.Tensor) and requires_grad is None else bool(requires_grad)
    setattr(module, name, nn.Parameter(value.detach().clone(), requires_grad=grad))


def call_with(model: nn.Module, example_input: Any) -> Any:
    """Call `model` on `example_input`: a tensor, a tuple/list of positional inputs, or a mapping of keyword inputs."""
    if isinstance(example_input, dict):
        return model(**example_input)
    if isinstance(example_input, (tuple, list)):
        return model(*example_input)
    return model(example_input)


def own_class(module: nn.Module) -> None:
    """Give `module` a private copy of its (parametrized) class.

    ``copy.deepcopy`` of a parametrized module shares the dynamically created class, and
    ``torch.nn.utils.parametrize.remove_parametrizations`` deletes the property from that class,
    which would break every other copy (torch 2.x). A private class makes removal local to `module`.
    """
    cls = module.__class__
    namespace = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
    module.__class__ = type(cls.__name__, cls.__bases__, namespace)


def bake_parametrization(module: nn.Module, name: str) -> None:
    """Replace the parametrized tensor `name` by its current value, safely on deep copies."""
    from torch.nn.utils import parametrize

    if not parametrize.is_parametrized(module, name):
        return
    own_class(module)
    with torch.no_grad():
        parametrize.remove_parametrizations(module, name, leave_parametrized=True)


@dataclasses.dataclass(frozen=True)
class TiedSet:
    """Parameters that are one tensor (tied weights): ``(module name, parameter name)`` members and
    the shape they shared when recorded."""

    members: tuple[tuple[str, str], ...]
    shape: tuple[int, ...]


def tied_parameters(model: nn.Module) -> list[TiedSet]:
    """Every set of at least two ``(module, parameter)`` places holding the same `nn.Parameter`
    (tied weights, e.g. an embedding and a language-model head, or an encoder's and a decoder's
    embedding)."""
    by_id: dict[int, list[tuple[str, str]]] = {}
    shapes: dict[int, tuple[int, ...]] = {}
    for module_name, module in model.named_modules(remove_duplicate=False):
        for pname, param in module.named_parameters(recurse=False):
            members = by_id.setdefault(id(param), [])
            shapes[id(param)] = tuple(param.shape)
            if (module_name, pname) not in members:
                members.append((module_name, pname))
    return [TiedSet(tuple(m), shapes[k]) for k, m in by_id.items() if len(m) > 1]


def _fit_size_attributes(module: nn.Module, pname: str, value: torch.Tensor) -> None:
    """Update the size attributes of a standard layer whose parameter `pname` became `value`."""
    if pname != "weight":
        return
    if isinstance(module, nn.Embedding):
        module.num_embeddings, module.embedding_dim = int(value.shape[0]), int(value.shape[1])
    elif isinstance(module, nn.Linear):
        module.out_features, module.in_features = int(value.shape[0]), int(value.shape[1])
    elif hasattr(module, "nf") and value.dim() == 2:  # Hugging Face Conv1D: weight (in, out)
        setattr(module, "nf", int(value.shape[1]))  # noqa: B010 - a plain int attribute, not a submodule


def retie(model: nn.Module, ties: list[TiedSet]) -> None:
    """Make each tied set share one parameter again after surgery replaced its members one by one.

    Members that were cut must have been cut alike; a member that still has the recorded shape (its
    layer was not cut, e.g. not reached by the traced forward) takes the cut tensor too. Raises
    :class:`ModelError` naming both when two members were cut differently.
    """
    for tie in ties:
        params = [(m, p, getattr(get_module(model, m), p)) for m, p in tie.members]
        cut = [entry for entry in params if tuple(entry[2].shape) != tie.shape]
        base_module, base_name, base = cut[0] if cut else params[0]
        for module_name, pname, other in params:
            if other is base:
                continue
            if tuple(other.shape) == tie.shape and cut:
                pass  # not cut: follows the cut member
            elif other.shape != base.shape or not torch.equal(other.detach(), base.detach()):
                raise ModelError(
                    f"Tied weights '{base_module}.{base_name}' {tuple(base.shape)} and "
                    f"'{module_name}.{pname}' {tuple(other.shape)} were cut differently; they must be pruned together."
                )
            module = get_module(model, module_name)
            setattr(module, pname, base)
            _fit_size_attributes(module, pname, base)
