"""Safe loading of weight files: safetensors, or `.pt`/`.pth`/`.bin` through ``torch.load(weights_only=True)``.

torchslim never unpickles arbitrary objects. A pickle that carries anything but tensors and plain
containers is refused with :class:`UnsafeInputError` before any of its code can run.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from torchslim.core.errors import ArtifactError, NonFiniteWeightsError, UnsafeInputError

SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def load_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"Weights file {str(path)!r} does not exist.")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ArtifactError(f"Weights file {str(path)!r} is not a valid safetensors file: {exc}") from exc


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
        ) from exc
    except Exception as exc:  # the unpickler of a hostile file fails in many ways (IndexError, KeyError, ...)
        first = (str(exc).splitlines() or [""])[0][:200]
        raise ArtifactError(
            f"Weights file {str(path)!r} is corrupt or not a PyTorch file: {type(exc).__name__}: {first}"
        ) from exc
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ArtifactError(f"Weights file {str(path)!r} does not hold a state_dict of tensors.")
    return dict(obj)


def load_weights(path: str | Path, *, allow_nonfinite: bool = False) -> dict[str, torch.Tensor]:
    """Load a state dict from `.safetensors` or a PyTorch file, safely.

    Tensors holding NaN or Inf raise :class:`NonFiniteWeightsError` naming them unless `allow_nonfinite`.
    """
    path = Path(path)
    if path.suffix in SAFETENSORS_SUFFIXES:
        state = load_safetensors(path)
    elif path.suffix in TORCH_SUFFIXES:
        state = load_torch_weights(path)
    else:
        state = None
    if state is not None:
        check_finite(state, source=str(path), allow=allow_nonfinite)
        return state
    raise ArtifactError(
        f"Weights file {str(path)!r}: unknown suffix {path.suffix!r}; "
        f"expected one of {list(SAFETENSORS_SUFFIXES + TORCH_SUFFIXES)}."
    )


def check_finite(tensors: Mapping[str, torch.Tensor], *, source: str, allow: bool = False) -> None:
    """Refuse floating tensors holding NaN or Inf (naming up to three); `allow` accepts them."""
    if allow:
        return
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise NonFiniteWeightsError(
            f"{source}: tensor(s) {bad[:3]}{more} hold NaN or Inf; pass allow_nonfinite=True "
            "(--allow-nonfinite on the command line) to load them anyway."
        )


def report_casts(model: nn.Module, tensors: Mapping[str, torch.Tensor], *, source: str) -> list[str]:
    """Warn (one warning naming the tensors) when stored dtypes differ from the model's; return the names."""
    expected = model.state_dict()
    cast = [
        f"{k} ({str(t.dtype).replace('torch.', '')} -> {str(expected[k].dtype).replace('torch.', '')})"
        for k, t in tensors.items()
        if k in expected and t.dtype != expected[k].dtype
    ]
    if cast:
        more = f" and {len(cast) - 3} more" if len(cast) > 3 else ""
        warnings.warn(f"{source}: stored dtype cast on load: {', '.join(cast[:3])}{more}.", UserWarning, stacklevel=3)
    return cast


def check_finite_model(model: nn.Module, *, source: str, allow: bool = False) -> None:
    """Refuse a model whose floating weights or buffers hold NaN or Inf (a
    :class:`~torchslim.core.errors.NonFiniteWeightsError` naming them and `source`), unless `allow`."""
    check_finite(dict(model.state_dict()), source=source, allow=allow)
