"""Private helpers shared by the measurement modules: calling a model on any input form, keeping
its modes intact, finding each layer's own (effective) weights, and bit widths.

Compressed layers are read only through the public layer contract
(:class:`torchslim.core.layer.CompressedLayer`): ``effective_weight()``, ``stored_weight()`` and
``storage_bits()``; measurement needs nothing else from the technique that made them.

Nothing here changes a model: :func:`eval_mode` restores every submodule's ``training`` flag,
and :func:`own_weights` reads effective weights under ``torch.no_grad``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from torchslim.core.batches import (  # noqa: F401 (re-exported for the measure modules)
    batch_size_of,
    call_model,
    is_text_batch,
    logits_of,
    model_device,
    to_device,
)
from torchslim.core.errors import DataError
from torchslim.core.layer import CompressedLayer, StorageBits

ROOT_NAME = "(root)"
"""Name used for work done directly in the top-level module's ``forward`` (not in a submodule)."""


def display_name(qualified: str) -> str:
    return qualified or ROOT_NAME


def module_by_display_name(model: nn.Module, name: str) -> nn.Module:
    return model if name == ROOT_NAME else model.get_submodule(name)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put `model` in eval mode and restore each submodule's previous ``training`` flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield model
    finally:
        for module, flag in flags:
            module.training = flag


@contextlib.contextmanager
def num_threads(threads: int | None) -> Iterator[int]:
    """Set ``torch.set_num_threads(threads)`` for the block (when given) and restore the old value."""
    previous = torch.get_num_threads()
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            from torchslim.core.errors import ConfigError

            raise ConfigError(f"threads={threads!r} must be a positive integer or None.")
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def with_batch_size(inputs: Any, batch_size: int) -> Any:
    """Repeat the first sample of `inputs` `batch_size` times along dimension 0."""
    if batch_size < 1:
        from torchslim.core.errors import ConfigError

        raise ConfigError(f"batch_size={batch_size!r} must be >= 1.")
    if isinstance(inputs, torch.Tensor):
        if inputs.dim() == 0:
            raise DataError("Cannot build a batch from a 0-dimensional input tensor.")
        first = inputs[:1]
        return first.expand(batch_size, *first.shape[1:]).contiguous()
    if is_text_batch(inputs):
        return [inputs[0]] * batch_size
    if isinstance(inputs, Mapping):
        return {k: with_batch_size(v, batch_size) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    if isinstance(inputs, (list, tuple)):
        return type(inputs)(with_batch_size(v, batch_size) if isinstance(v, torch.Tensor) else v for v in inputs)
    raise DataError(f"Cannot batch inputs of type {type(inputs).__name__}.")


def dtype_bits(dtype: torch.dtype) -> int:
    """Bit width of a tensor dtype (float32 -> 32, bfloat16/float16 -> 16, int8 -> 8, bool -> 1)."""
    if dtype == torch.bool:
        return 1
    return int(dtype.itemsize) * 8


def own_weights(module: nn.Module) -> list[tuple[str, torch.Tensor, list[torch.Tensor]]]:
    """The tensors `module` owns directly, as ``(name, effective_tensor, stored_parameters)``.

    * a parametrized tensor (``torch.nn.utils.parametrize``): the effective tensor (e.g. the masked
      weight), stored as its ``original`` parameter(s);
    * a ``torch.nn.utils.prune``-style ``weight_orig`` + ``weight_mask`` pair: ``weight_orig * weight_mask``,
      stored as ``weight_orig``;
    * a compressed layer (:class:`~torchslim.core.layer.CompressedLayer`): its ``effective_weight()``
      (the float weight it computes with), stored as its ``stored_weight()`` (codes or indices);
    * any other own parameter: itself.

    Parameters of a ``ParametrizationList`` are reported by the module that owns the parametrization,
    so callers skip ``ParametrizationList`` modules.
    """
    out: list[tuple[str, torch.Tensor, list[torch.Tensor]]] = []
    with torch.no_grad():
        if isinstance(module, CompressedLayer):
            # stored as codes (a buffer, say), still a weight of the model
            out.append(("weight", module.effective_weight().detach(), [module.stored_weight()]))
        if parametrize.is_parametrized(module):
            plists = module.parametrizations
            for tname, plist in plists.items() if isinstance(plists, nn.ModuleDict) else ():
                effective = getattr(module, tname)
                stored: list[torch.Tensor] = list(plist.parameters(recurse=False))
                out.append((tname, effective.detach(), stored))
        for pname, param in module.named_parameters(recurse=False):
            if pname.endswith("_orig"):
                base = pname[: -len("_orig")]
                mask = getattr(module, base + "_mask", None)
                if isinstance(mask, torch.Tensor):
                    out.append((base, (param * mask).detach(), [param]))
                    continue
            out.append((pname, param.detach(), [param]))
    return out


def is_parametrization_list(module: nn.Module) -> bool:
    return isinstance(module, parametrize.ParametrizationList)


def weight_dtype_bits(module: nn.Module) -> int | None:
    """Bit width of the module's main weight (``weight`` if present, else its first own tensor)."""
    tensors = own_weights(module)
    if not tensors:
        return None
    for name, tensor, _ in tensors:
        if name == "weight":
            return dtype_bits(tensor.dtype)
    return dtype_bits(tensors[0][1].dtype)


def storage_bits(module: nn.Module) -> StorageBits | None:
    """The contract's bits of a compressed layer (``storage_bits()``), None for any other module."""
    return module.storage_bits() if isinstance(module, CompressedLayer) else None


def layer_weight_bits(module: nn.Module) -> int | None:
    """Bits per stored weight: a compressed layer's ``storage_bits().weight``, else the weight's dtype."""
    bits = storage_bits(module)
    return bits.weight if bits is not None else weight_dtype_bits(module)
