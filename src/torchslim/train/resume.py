"""Checkpoints of the one training loop: which one a call may resume, how it is applied, what it holds.

With a ``run_dir``, ``train`` writes a checkpoint every ``config.checkpoint_every`` steps (when set)
and always a final one marked ``complete`` (see :mod:`torchslim.train.checkpoint` for the files).
Only the run a checkpoint belongs to resumes it. A checkpoint written for other starting weights,
other model keys or shapes, another training config (other than ``checkpoint_every`` and
``log_every``), seed, number of batches per epoch or list of hook types is *not* applied: ``train``
warns (:class:`StaleCheckpointWarning`, naming the checkpoint and the difference), trains from
scratch and replaces it with its own first checkpoint. A warning rather than an error, because the
run directory is the run's own scratch space and a rerun with changed inputs means "train this"; a
stale checkpoint is never silently applied.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import torch

from torchslim.core.errors import ArtifactError
from torchslim.train.checkpoint import (
    Checkpointer,
    LoadedCheckpoint,
    describe_mismatch,
    from_json,
    load_model_tensors,
    to_json,
)
from torchslim.train.config import TrainConfig
from torchslim.train.determinism import rng_state
from torchslim.train.hooks import TrainHook, TrainState
from torchslim.train.meter import Meter


class StaleCheckpointWarning(UserWarning):
    """A run directory holds a checkpoint of another run; it is not resumed but replaced."""


def _config_difference(saved: dict[str, Any], config: TrainConfig) -> str | None:
    current = config.identity()
    # a field a checkpoint predates counts as its default (adding an option keeps old checkpoints)
    defaults = TrainConfig().identity()
    diff = sorted(k for k in set(saved) | set(current) if saved.get(k, defaults.get(k)) != current.get(k, "<absent>"))
    if not diff:
        return None
    return ", ".join(f"{k}: {saved.get(k, defaults.get(k))!r} -> {current.get(k)!r}" for k in diff)


def stale_reason(ckpt: LoadedCheckpoint, *, state: TrainState, hooks: list[TrainHook], fingerprint: str) -> str | None:
    """Why `ckpt` belongs to another run than the one `state` starts (so must not be resumed), or None."""
    meta, model = ckpt.meta, state.model
    if meta.get("model_fingerprint") != fingerprint:
        mismatch = describe_mismatch(model, ckpt.model_tensors)
        if mismatch:
            return f"it does not match the model {type(model).__name__}: {mismatch}"
        return "it belongs to a run that started from other model weights than the model given now"
    details = _config_difference(meta.get("config", {}), state.config)
    if details:
        return f"it was written with another training config ({details})"
    if meta.get("seed") != state.seed:
        return f"it was written with seed {meta.get('seed')!r}, this run uses {state.seed}"
    per_epoch = state.steps_per_epoch
    if meta.get("steps_per_epoch") != per_epoch:
        return f"it was written for {meta.get('steps_per_epoch')!r} batches per epoch, the data now has {per_epoch!r}"
    saved_hooks = [h.get("type") for h in meta.get("hooks", [])]
    own_hooks = [type(h).__qualname__ for h in hooks]
    if saved_hooks != own_hooks:
        return f"it was written with hooks {saved_hooks}, this run has {own_hooks}"
    return None


def resumable(
    checkpointer: Checkpointer | None, *, state: TrainState, hooks: list[TrainHook], fingerprint: str
) -> LoadedCheckpoint | None:
    """The checkpoint of this run in the run directory, or None (no checkpoint, or a stale one: warns)."""
    ckpt = checkpointer.read() if checkpointer is not None else None
    if ckpt is None:
        return None
    reason = stale_reason(ckpt, state=state, hooks=hooks, fingerprint=fingerprint)
    if reason is None:
        return ckpt
    warnings.warn(
        f"Not resuming from checkpoint {str(ckpt.path)!r}: {reason}. Training from scratch; the first "
        "new checkpoint replaces it.",
        StaleCheckpointWarning,
        stacklevel=3,
    )
    return None


def restore(ckpt: LoadedCheckpoint, state: TrainState, meter: Meter, hooks: list[TrainHook]) -> dict[str, torch.Tensor]:
    """Apply a checkpoint to the model, optimizer, schedule, hooks and counters; return its RNG state."""
    meta, tensors = ckpt.meta, ckpt.tensors
    load_model_tensors(state.model, ckpt.model_tensors, path=ckpt.path)
    where = str(ckpt.path)
    try:
        state.optimizer.load_state_dict(from_json(meta["optimizer"], tensors, where=where))
        state.scheduler.load_state_dict(from_json(meta["scheduler"], tensors, where=where))
    except (KeyError, ValueError) as exc:
        raise ArtifactError(f"Checkpoint {where!r}: cannot restore the optimizer state: {exc}.") from None
    for hook, saved in zip(hooks, meta.get("hooks", []), strict=False):  # same types: stale_reason checked
        hook.load_state_dict(from_json(saved.get("state", {}), tensors, where=where))
    state.step = int(meta["step"])
    state.epoch = int(meta["epoch"])
    state.batch_in_epoch = int(meta["batch_in_epoch"])
    state.last_loss = meta.get("last_loss")
    state.history = list(meta.get("history", []))
    for key, value in dict(meta.get("meter", {})).items():
        setattr(meter, key, value)
    return {k: v for k, v in tensors.items() if k.startswith("rng/")}


@dataclasses.dataclass
class Snapshots:
    """Writes the checkpoints of one run: ``snapshots(complete)`` saves everything a resume needs."""

    checkpointer: Checkpointer
    state: TrainState
    meter: Meter
    hooks: list[TrainHook]
    fingerprint: str

    def __call__(self, complete: bool) -> None:
        state = self.state
        tensors = rng_state(state.device)
        meta = {
            "step": state.step,
            "epoch": state.epoch,
            "batch_in_epoch": state.batch_in_epoch,
            "total_steps": state.total_steps,
            "steps_per_epoch": state.steps_per_epoch,
            "complete": complete,
            "seed": state.seed,
            "config": state.config.identity(),
            "model_fingerprint": self.fingerprint,
            "last_loss": state.last_loss,
            "meter": dataclasses.asdict(self.meter),
            "history": state.history,
            "scheduler": to_json(state.scheduler.state_dict(), "scheduler", tensors),
            "optimizer": to_json(state.optimizer.state_dict(), "optimizer", tensors),
            "hooks": [
                {"type": type(h).__qualname__, "state": to_json(h.state_dict(), f"hooks/{i}", tensors)}
                for i, h in enumerate(self.hooks)
            ],
        }
        self.checkpointer.write(meta, state.model, tensors)
