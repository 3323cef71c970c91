"""The public layer contract: what a compressed module tells the rest of torchslim about itself.

A technique that replaces a layer by a compressed one (integer codes, a codebook, packed signs)
implements :class:`CompressedLayer`. ``measure/``, ``io/``, ``deploy/`` and ``report/`` read such a
layer only through this contract, never through the technique's private attributes, so a new
level type (k-means, power-of-two, binary, ternary) is measured, saved, exported and reported the
moment its module implements these methods.

The contract, in words:

* **what it stores**: :meth:`CompressedLayer.stored_state` gives the tensors as they are written
  to the artifact (packed codes, scales, codebooks) and a JSON codec description;
  :meth:`CompressedLayer.load_stored_state` is its inverse;
* **what it computes with**: :meth:`CompressedLayer.effective_weight` is the float weight the
  layer stands for (what accuracy, SQNR and the MAC count see); :meth:`CompressedLayer.stored_weight`
  the tensor whose elements are stored (parameter counts); :meth:`CompressedLayer.storage_bits`
  the bits per stored weight and per input (the energy model);
* **its runtime form**: :meth:`CompressedLayer.onnx_form` switches the layer to its export form
  while a runtime backend traces it, and says whether its weights become integer kernels;
* **how it is rebuilt**: :meth:`CompressedLayer.layout` is the JSON that the technique's plan
  replay (:mod:`torchslim.core.plans`) needs to rebuild an empty layer of the same structure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class StorageBits:
    """Bits per stored weight element and per input element of a compressed layer.

    ``activation`` is None when the layer's input stays float (weight-only compression).
    """

    weight: int
    activation: int | None = None


@dataclasses.dataclass(frozen=True)
class OnnxForm:
    """What a layer's export form becomes on a runtime: integer kernels or float weights."""

    integer_weights: bool
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


@runtime_checkable
class CompressedLayer(Protocol):
    """A module whose weight is stored in a compressed form (see the module docstring)."""

    def stored_state(self, prefix: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The tensors to store (keys start with `prefix`) and the JSON codec description."""
        ...

    def load_stored_state(self, prefix: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Inverse of :meth:`stored_state`: fill this (rebuilt, empty) layer from stored tensors."""
        ...

    def effective_weight(self) -> torch.Tensor:
        """The float weight this layer computes with, in the shape of the float layer it replaced."""
        ...

    def stored_weight(self) -> torch.Tensor:
        """The weight elements that are stored (codes or indices), for parameter counts."""
        ...

    def storage_bits(self) -> StorageBits:
        """Bits per stored weight element and per input element."""
        ...

    def layout(self) -> dict[str, Any]:
        """The JSON that rebuilds an empty layer of this structure (its plan replay reads it)."""
        ...

    def onnx_form(self, enabled: bool, *, dialect: str = "onnx") -> OnnxForm:
        """Switch to (``enabled=True``) or back from the form traced by an export: ``dialect="onnx"``
        for the ONNX exporter, ``"pt2e"`` for ``torch.export`` (PyTorch's ``quantized_decomposed``
        operators, which ExecuTorch's XNNPACK delegate runs as integer kernels)."""
        ...


def compressed_layers(model: nn.Module) -> Iterator[tuple[str, CompressedLayer]]:
    """``(qualified_name, layer)`` for every module of `model` that implements the contract,
    outermost first; layers nested inside a compressed layer are not listed again."""
    outer: list[str] = []
    for name, module in model.named_modules():
        if any(name == o or name.startswith(o + ".") for o in outer if o) or ("" in outer and name):
            continue
        if isinstance(module, CompressedLayer):
            outer.append(name)
            yield name, module


SPARSE_KERNEL_ATTRIBUTE = "sparse_kernel"
"""The plain boolean module attribute that says whether a runtime kernel skips zero weights."""


def mark_sparse_kernel(module: nn.Module, sparse: bool) -> None:
    """Declare whether `module`'s zeros are skipped by its kernel (True) or still computed (False).

    A pruning mask marks its layer False (dense kernels multiply the zeros); a layer that runs a
    sparse kernel marks itself True. The energy model reads it with :func:`uses_sparse_kernel`.
    """
    setattr(module, SPARSE_KERNEL_ATTRIBUTE, bool(sparse))


def uses_sparse_kernel(module: nn.Module) -> bool:
    """True when `module` was marked as running a kernel that skips zero weights."""
    return getattr(module, SPARSE_KERNEL_ATTRIBUTE, False) is True
