"""Sizes in bytes: what an artifact directory really takes on disk, and raw tensor bytes.

* ``directory_bytes(path)``: the sum of the sizes of the regular files under `path` (symlinks are
  not followed, so nothing is counted twice); for a file, its size. This is the honest "bytes on
  disk" of a saved artifact (weights, packed tensors, plan, report).
* ``state_dict_bytes(model)``: ``sum numel x element_size`` over the state dict (parameters and
  buffers, including masks), each storage counted once (tied weights appear once).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from torch import nn

from torchslim.core.errors import ArtifactError, ConfigError


def directory_bytes(path: str | Path) -> int:
    """Total bytes of the regular files under `path` (or of the file `path`)."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"Artifact path {str(path)!r} does not exist.")
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(path, followlinks=False):
        for name in files:
            full = Path(root) / name
            if full.is_symlink() or not full.is_file():
                continue
            total += full.stat().st_size
    return total


def state_dict_bytes(model: nn.Module, dtype_bytes: float | None = None) -> int:
    """Raw bytes of the model's state dict; each tensor storage counted once.

    With `dtype_bytes` (e.g. 2 for fp16, 0.5 for packed 4-bit), floating-point tensors are counted at
    that many bytes per element instead of their current size (rounded up per tensor); integer and
    bool buffers keep their own size.
    """
    if dtype_bytes is not None and (isinstance(dtype_bytes, bool) or not dtype_bytes > 0):
        raise ConfigError(f"dtype_bytes={dtype_bytes!r} must be a positive number or None.")
    seen: set[tuple[int, int, tuple[int, ...]]] = set()
    total = 0
    for tensor in model.state_dict(keep_vars=True).values():
        if tensor is None:
            continue
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if tensor.numel() and key in seen:
            continue
        seen.add(key)
        if dtype_bytes is not None and tensor.dtype.is_floating_point:
            total += math.ceil(tensor.numel() * dtype_bytes)
        else:
            total += tensor.numel() * tensor.element_size()
    return total
