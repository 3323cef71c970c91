"""Per-tensor storage codecs: dense, bitmask + values, or indices + values, whichever is smallest.

Unstructured sparsity only saves bytes on disk when the zeros are not stored. For a tensor with
``n`` elements of ``b`` bytes and ``k`` non-zeros:

* dense:   ``n * b`` bytes
* bitmask: ``ceil(n / 8) + k * b`` bytes (one bit per element marks a non-zero)
* index:   ``k * i + k * b`` bytes, with ``i`` the byte width of the smallest unsigned type that
  holds ``n - 1`` (flat positions)

`encode` picks the smallest (ties go to dense); `decode` inverts it exactly (bit-identical).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

DENSE, BITMASK, INDEX = "dense", "bitmask", "index"


def _index_dtype(numel: int) -> torch.dtype:
    if numel <= 2**8:
        return torch.uint8
    if numel <= 2**16:
        return torch.uint16
    if numel <= 2**31:
        return torch.int32
    return torch.int64


def encoded_sizes(tensor: torch.Tensor) -> dict[str, int]:
    n = tensor.numel()
    b = tensor.element_size()
    k = int(torch.count_nonzero(tensor).item()) if n else 0
    i = torch.empty((), dtype=_index_dtype(n)).element_size()
    return {DENSE: n * b, BITMASK: -(-n // 8) + k * b, INDEX: k * (i + b)}


def encode(key: str, tensor: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """Return the tensors to store for `key` and the metadata needed to decode (None for dense)."""
    if not tensor.is_floating_point() or tensor.numel() < 64:
        return {key: tensor}, None
    sizes = encoded_sizes(tensor)
    best = min(sizes, key=lambda k: (sizes[k], k != DENSE))
    if best == DENSE:
        return {key: tensor}, None
    flat = tensor.detach().reshape(-1)
    nonzero = flat != 0
    values = flat[nonzero].clone()
    meta = {"codec": best, "shape": list(tensor.shape), "dtype": str(tensor.dtype).replace("torch.", "")}
    if best == BITMASK:
        bits = np.packbits(nonzero.cpu().numpy().astype(np.uint8))
        return {f"{key}::mask": torch.from_numpy(bits), f"{key}::values": values}, meta
    index = torch.nonzero(nonzero).reshape(-1).to(_index_dtype(flat.numel()))
    return {f"{key}::index": index, f"{key}::values": values}, meta


def decode(key: str, stored: dict[str, torch.Tensor], meta: dict[str, Any]) -> torch.Tensor:
    """Rebuild the dense tensor `key` from its stored parts."""
    shape = tuple(meta["shape"])
    dtype = getattr(torch, meta["dtype"])
    numel = int(np.prod(shape)) if shape else 1
    values = stored[f"{key}::values"]
    out = torch.zeros(numel, dtype=dtype)
    if meta["codec"] == BITMASK:
        bits = np.unpackbits(stored[f"{key}::mask"].numpy())[:numel].astype(bool)
        out[torch.from_numpy(bits)] = values
    elif meta["codec"] == INDEX:
        out[stored[f"{key}::index"].to(torch.int64)] = values
    else:
        raise ValueError(f"Unknown codec {meta['codec']!r} for tensor {key!r}.")
    return out.reshape(shape)
