"""Training checkpoints: safetensors for tensors, JSON for everything else, never pickle.

Layout under ``run_dir/checkpoint/``::

    latest.json                 {"format", "version", "step", "dir", "complete"}  (written last)
    step-000000120/
        model.safetensors       the model's state_dict
        state.safetensors       optimizer tensors, hook tensors, RNG state
        state.json              step, epoch, schedule, optimizer/hook non-tensor fields, history,
                                the training config and a fingerprint of the starting weights

Each file is written atomically and ``latest.json`` is replaced only once the step directory is
complete, so a run killed at any moment leaves the previous checkpoint usable; older step
directories are removed after the pointer moves. Nested state (an optimizer's ``state_dict``, a
hook's) is split by :func:`to_json`: tensors go to the safetensors file under generated keys and are
referenced from JSON as ``{"__tensor__": key}``; tuples and non-string dict keys are encoded so the
round trip restores the same Python structure.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from torchslim.core.errors import ArtifactError
from torchslim.io.atomic import write_json, write_safetensors

FORMAT = "torchslim.train.checkpoint"
VERSION = 1
_SCALARS = (str, int, float, bool, type(None))


def to_json(obj: Any, prefix: str, tensors: dict[str, torch.Tensor], *, where: str = "") -> Any:
    """Return a JSON-able copy of `obj` with its tensors moved into `tensors` (keys ``prefix/N``)."""
    where = where or prefix
    if isinstance(obj, torch.Tensor):
        key = f"{prefix}/{len(tensors)}"
        tensors[key] = obj.detach().to("cpu")
        return {"__tensor__": key}
    if isinstance(obj, bool) or isinstance(obj, _SCALARS):
        return obj
    if isinstance(obj, tuple):
        return {"__tuple__": [to_json(v, prefix, tensors, where=where) for v in obj]}
    if isinstance(obj, list):
        return [to_json(v, prefix, tensors, where=where) for v in obj]
    if isinstance(obj, dict):
        plain = all(isinstance(k, str) and not k.startswith("__") for k in obj)
        if plain:
            return {k: to_json(v, prefix, tensors, where=f"{where}.{k}") for k, v in obj.items()}
        items = []
        for k, v in obj.items():
            if not isinstance(k, _SCALARS):
                raise ArtifactError(f"{where}: dict key {k!r} of type {type(k).__name__} cannot be checkpointed.")
            items.append([k, to_json(v, prefix, tensors, where=f"{where}.{k}")])
        return {"__items__": items}
    if hasattr(obj, "item") and hasattr(obj, "dtype"):  # numpy scalar
        return obj.item()
    raise ArtifactError(
        f"{where}: a value of type {type(obj).__name__} cannot be checkpointed; state must hold only "
        "JSON values (dict, list, str, int, float, bool, None) and tensors."
    )


def from_json(obj: Any, tensors: dict[str, torch.Tensor], *, where: str) -> Any:
    """Inverse of :func:`to_json`."""
    if isinstance(obj, list):
        return [from_json(v, tensors, where=where) for v in obj]
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            key = obj["__tensor__"]
            if key not in tensors:
                raise ArtifactError(f"{where}: tensor {key!r} is missing from the checkpoint.")
            return tensors[key]
        if set(obj) == {"__tuple__"}:
            return tuple(from_json(v, tensors, where=where) for v in obj["__tuple__"])
        if set(obj) == {"__items__"}:
            return {k: from_json(v, tensors, where=where) for k, v in obj["__items__"]}
        return {k: from_json(v, tensors, where=where) for k, v in obj.items()}
    return obj


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of the model's state_dict."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@dataclasses.dataclass
class LoadedCheckpoint:
    """A checkpoint read from disk, checked for integrity but not yet applied to a model."""

    path: Path
    meta: dict[str, Any]
    model_tensors: dict[str, torch.Tensor]
    tensors: dict[str, torch.Tensor]

    @property
    def step(self) -> int:
        return int(self.meta["step"])

    @property
    def complete(self) -> bool:
        return bool(self.meta.get("complete", False))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"Checkpoint file {str(path)!r} is missing.") from None
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"Checkpoint file {str(path)!r} is not valid JSON: {exc}.") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"Checkpoint file {str(path)!r} must hold a JSON object.")
    return data


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ArtifactError(f"Checkpoint file {str(path)!r} is missing.")
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types
        raise ArtifactError(f"Checkpoint file {str(path)!r} is not a valid safetensors file: {exc}.") from None


class Checkpointer:
    """Reads and writes the checkpoints of one training run directory."""

    def __init__(self, run_dir: str | Path) -> None:
        self.root = Path(run_dir) / "checkpoint"

    @property
    def pointer(self) -> Path:
        return self.root / "latest.json"

    def read(self) -> LoadedCheckpoint | None:
        """Return the latest checkpoint, or None when there is none."""
        if not self.pointer.exists():
            return None
        latest = _read_json(self.pointer)
        if latest.get("format") != FORMAT or latest.get("version") != VERSION:
            raise ArtifactError(
                f"{str(self.pointer)!r} is not a torchslim training checkpoint of version {VERSION} "
                f"(format={latest.get('format')!r}, version={latest.get('version')!r})."
            )
        name = str(latest.get("dir", ""))
        if not name.startswith("step-") or "/" in name or "\\" in name or ".." in name:
            raise ArtifactError(f"{str(self.pointer)!r} names an invalid checkpoint directory {name!r}.")
        step_dir = self.root / name
        meta = _read_json(step_dir / "state.json")
        if meta.get("step") != latest.get("step"):
            raise ArtifactError(
                f"Checkpoint {str(step_dir)!r} is at step {meta.get('step')!r} but {str(self.pointer)!r} "
                f"says {latest.get('step')!r}."
            )
        return LoadedCheckpoint(
            path=step_dir,
            meta=meta,
            model_tensors=_read_tensors(step_dir / "model.safetensors"),
            tensors=_read_tensors(step_dir / "state.safetensors"),
        )

    def write(self, meta: dict[str, Any], model: nn.Module, tensors: dict[str, torch.Tensor]) -> Path:
        """Write one checkpoint (``meta["step"]`` names it), then move the pointer and prune old ones."""
        step = int(meta["step"])
        name = f"step-{step:09d}"
        step_dir = self.root / name
        model_tensors = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
        file_meta = {"format": FORMAT, "step": str(step)}
        write_safetensors(step_dir / "model.safetensors", model_tensors, metadata=file_meta)
        write_safetensors(step_dir / "state.safetensors", tensors, metadata=file_meta)
        write_json(step_dir / "state.json", meta)
        write_json(
            self.pointer,
            {"format": FORMAT, "version": VERSION, "step": step, "dir": name, "complete": bool(meta.get("complete"))},
        )
        for other in self.root.glob("step-*"):
            if other.name != name and other.is_dir():
                shutil.rmtree(other, ignore_errors=True)
        return step_dir


def describe_mismatch(model: nn.Module, tensors: dict[str, torch.Tensor]) -> str | None:
    """Say how checkpointed model tensors differ in keys or shapes from `model`, or None."""
    own = model.state_dict()
    missing = [k for k in own if k not in tensors]
    unexpected = [k for k in tensors if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(tensors[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in tensors and tuple(tensors[k].shape) != tuple(own[k].shape)
    ]
    parts = []
    if missing:
        parts.append(f"missing keys {missing[:5]}" + (" ..." if len(missing) > 5 else ""))
    if unexpected:
        parts.append(f"unexpected keys {unexpected[:5]}" + (" ..." if len(unexpected) > 5 else ""))
    if shapes:
        parts.append("shape mismatch " + "; ".join(shapes[:5]) + (" ..." if len(shapes) > 5 else ""))
    return ", ".join(parts) or None


def load_model_tensors(model: nn.Module, tensors: dict[str, torch.Tensor], *, path: Path) -> None:
    """Copy checkpointed tensors into `model`; keys or shapes that differ raise :class:`ArtifactError`."""
    mismatch = describe_mismatch(model, tensors)
    if mismatch:
        raise ArtifactError(
            f"Checkpoint {str(path)!r} does not match the model {type(model).__name__}: {mismatch}. "
            "Delete it (or use another run directory) to train from scratch."
        )
    model.load_state_dict(tensors, strict=True)
