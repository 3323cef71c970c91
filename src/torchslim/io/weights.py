"""Safe loading of weight files: safetensors, or `.pt`/`.pth`/`.bin` through ``torch.load(weights_only=True)``.

torchslim never unpickles arbitrary objects. A pickle that carries anything but tensors and plain
containers is refused with :class:`UnsafeInputError` before any of its code can run.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from torchslim.core.errors import ArtifactError, UnsafeInputError

SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def load_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"Weights file {str(path)!r} does not exist.")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ArtifactError(f"Weights file {str(path)!r} is not a valid safetensors file: {exc}") from None


def load_torch_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a PyTorch checkpoint with ``weights_only=True``; unwrap a ``{"state_dict": ...}`` wrapper."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"Weights file {str(path)!r} does not exist.")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeInputError(
            f"Refusing {str(path)!r}: it needs unpickling of arbitrary objects, which could run code "
            f"(torch.load weights_only=True rejected it: {str(exc).splitlines()[0]}). "
            "Save a plain state_dict or a .safetensors file instead."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as exc:
        raise ArtifactError(f"Weights file {str(path)!r} is corrupt or not a PyTorch file: {exc}") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ArtifactError(f"Weights file {str(path)!r} does not hold a state_dict of tensors.")
    return dict(obj)


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state dict from `.safetensors` or a PyTorch file, safely."""
    path = Path(path)
    if path.suffix in SAFETENSORS_SUFFIXES:
        return load_safetensors(path)
    if path.suffix in TORCH_SUFFIXES:
        return load_torch_weights(path)
    raise ArtifactError(
        f"Weights file {str(path)!r}: unknown suffix {path.suffix!r}; "
        f"expected one of {list(SAFETENSORS_SUFFIXES + TORCH_SUFFIXES)}."
    )
