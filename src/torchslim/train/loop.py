"""The one small training loop that every training-time technique runs.

``train(model, loader, config=..., hooks=[...])`` fine-tunes `model` in place. Techniques plug in
as :class:`~torchslim.train.hooks.TrainHook` objects; a handler composes them simply by passing a
list (``hooks=[kd_hook, mask_hook]``), and modules of the model may contribute their own (see
:func:`~torchslim.train.hooks.hooks_from_model`).

Determinism: inside ``train`` the global torch RNG is forked (restored on return), seeded with
`seed` before ``on_train_start`` and reseeded at the start of every epoch from ``(seed, epoch)``;
a DataLoader's own ``generator`` (and its sampler's) is reseeded the same way. So shuffling,
dropout and other torch randomness repeat bit for bit for a given seed on the same machine and
thread count. Python's ``random`` and NumPy's global RNG are not touched.

Checkpoints and resume (see :mod:`torchslim.train.checkpoint` for the files): with a ``run_dir``,
``train`` writes a checkpoint every ``config.checkpoint_every`` steps (when set) and always a final
one marked ``complete`` (written before ``on_train_end``). A later call with the same ``run_dir``
resumes from the latest checkpoint: the data order of the interrupted epoch is regenerated from
the seed, the batches already used are skipped, and the RNG state is restored, so a killed and
resumed run ends with the same weights as an uninterrupted one; from a complete checkpoint the
trained weights are restored without training again (hooks still get ``on_train_start`` and
``on_train_end``).

Only the run a checkpoint belongs to resumes it. A checkpoint written for other starting weights,
other model keys or shapes, another training config (other than ``checkpoint_every`` and
``log_every``), seed, number of batches per epoch or list of hook types is *not* applied: ``train``
warns (:class:`StaleCheckpointWarning`, naming the checkpoint and the difference), trains from
scratch and replaces it with its own first checkpoint. We chose a warning over an error because the
run directory is the run's own scratch space and a rerun with changed inputs means "train this";
a stale checkpoint is never silently applied. Unreadable or inconsistent checkpoint files raise
:class:`~torchslim.core.errors.ArtifactError` naming the file.
"""

from __future__ import annotations

import dataclasses
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from torchslim.core.batches import call_model, logits_of, to_device
from torchslim.core.errors import ArtifactError, ConfigError, DataError, ModelError, TorchSlimError
from torchslim.train.checkpoint import (
    Checkpointer,
    LoadedCheckpoint,
    describe_mismatch,
    from_json,
    load_model_tensors,
    model_fingerprint,
    to_json,
)
from torchslim.train.config import TrainConfig, schedule_factor
from torchslim.train.hooks import TrainHook, TrainState, hooks_from_model

LossFn = Callable[[Any, torch.Tensor], torch.Tensor]


class TrainingDivergedError(TorchSlimError, FloatingPointError):
    """The training loss became NaN or infinite."""


class StaleCheckpointWarning(UserWarning):
    """A run directory holds a checkpoint of another run; it is not resumed but replaced."""


@dataclasses.dataclass
class TrainResult:
    """What a call of :func:`train` did.

    `steps` counts all optimizer steps of the run including those restored from a checkpoint,
    `steps_run` only those taken by this call; `epochs` counts completed passes over the data;
    `final_loss` is the mean loss of the last pass (the partial one when ``max_steps`` cut it short),
    None when no step was taken; `resumed_from_step` is the checkpoint step this call started from
    (None for a fresh start); `seconds` is this call's wall time.
    """

    steps: int
    epochs: int
    final_loss: float | None
    history: list[dict[str, Any]]
    resumed_from_step: int | None
    seconds: float
    steps_run: int = 0


# ----------------------------------------------------------------------------------------------
# batches and outputs


def run_model(model: nn.Module, inputs: Any, device: torch.device | str = "cpu") -> Any:
    """Call `model` on one batch's inputs moved to `device` (see :func:`torchslim.core.batches.call_model`)."""
    return call_model(model, to_device(inputs, torch.device(device)))


def _split_batch(batch: Any, device: torch.device) -> tuple[Any, torch.Tensor]:
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise DataError(
            f"Training batches must be (inputs, labels) pairs; got {type(batch).__name__}"
            + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
            + "."
        )
    inputs, labels = batch
    if not isinstance(labels, torch.Tensor):
        labels = torch.as_tensor(labels)
    return to_device(inputs, device), labels.to(device)


def _default_loss(outputs: Any, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits_of(outputs), labels)


# ----------------------------------------------------------------------------------------------
# optimizer, schedule, seeding


def _make_optimizer(params: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def _make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, total: int | None, per_epoch: int | None
) -> torch.optim.lr_scheduler.LambdaLR:
    schedule_factor(config, config.warmup_steps, total, per_epoch)  # fail early on a missing horizon

    def factor(step: int) -> float:
        return schedule_factor(config, step, total, per_epoch)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=factor)


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + (epoch + 1) * 0x9E3779B1) % (2**63 - 1)


def _seed_epoch(loader: Any, seed: int, epoch: int) -> None:
    value = _epoch_seed(seed, epoch)
    torch.manual_seed(value)
    for owner in (loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator):
            generator.manual_seed(value)


def _steps_per_epoch(loader: Any) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


def _rng_devices(device: torch.device) -> list[int]:
    if device.type == "cuda":
        return [device.index if device.index is not None else torch.cuda.current_device()]
    return []


def _quiet(quiet: bool | None) -> bool:
    if quiet is not None:
        return bool(quiet)
    try:
        return not sys.stdout.isatty()
    except (AttributeError, ValueError):
        return True


# ----------------------------------------------------------------------------------------------
# the loop


@dataclasses.dataclass
class _Meter:
    """Running loss sums that survive checkpoints (so resumed history equals uninterrupted)."""

    window_sum: float = 0.0
    window_count: int = 0
    epoch_sum: float = 0.0
    epoch_count: int = 0
    last_epoch_mean: float | None = None
    last_lr: float | None = None

    def add(self, loss: float, lr: float) -> None:
        self.last_lr = lr
        self.window_sum += loss
        self.window_count += 1
        self.epoch_sum += loss
        self.epoch_count += 1

    def end_epoch(self) -> None:
        if self.epoch_count:
            self.last_epoch_mean = self.epoch_sum / self.epoch_count
        self.epoch_sum, self.epoch_count = 0.0, 0

    def final(self) -> float | None:
        return self.epoch_sum / self.epoch_count if self.epoch_count else self.last_epoch_mean


def _check_hooks(hooks: Sequence[Any]) -> list[TrainHook]:
    checked = []
    for i, hook in enumerate(hooks):
        if not isinstance(hook, TrainHook):
            raise ConfigError(f"hooks[{i}] must be a TrainHook, got {type(hook).__name__}.")
        checked.append(hook)
    return checked


def _stale_reason(
    ckpt: LoadedCheckpoint,
    *,
    model: nn.Module,
    config: TrainConfig,
    seed: int,
    per_epoch: int | None,
    hooks: list[TrainHook],
    fingerprint: str,
) -> str | None:
    """Why `ckpt` belongs to another run than this call (so must not be resumed), or None."""
    meta = ckpt.meta
    if meta.get("model_fingerprint") != fingerprint:
        mismatch = describe_mismatch(model, ckpt.model_tensors)
        if mismatch:
            return f"it does not match the model {type(model).__name__}: {mismatch}"
        return "it belongs to a run that started from other model weights than the model given now"
    saved = meta.get("config", {})
    current = config.identity()
    diff = sorted(k for k in set(saved) | set(current) if saved.get(k, "<absent>") != current.get(k, "<absent>"))
    if diff:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in diff)
        return f"it was written with another training config ({details})"
    if meta.get("seed") != seed:
        return f"it was written with seed {meta.get('seed')!r}, this run uses {seed}"
    if meta.get("steps_per_epoch") != per_epoch:
        return f"it was written for {meta.get('steps_per_epoch')!r} batches per epoch, the data now has {per_epoch!r}"
    saved_hooks = [h.get("type") for h in meta.get("hooks", [])]
    own_hooks = [type(h).__qualname__ for h in hooks]
    if saved_hooks != own_hooks:
        return f"it was written with hooks {saved_hooks}, this run has {own_hooks}"
    return None


def train(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    config: TrainConfig,
    hooks: Sequence[TrainHook] = (),
    loss_fn: LossFn | None = None,
    seed: int = 0,
    run_dir: str | Path | None = None,
    quiet: bool | None = None,
    device: str | torch.device = "cpu",
    include_model_hooks: bool = True,
) -> TrainResult:
    """Train `model` in place on `loader` and return what was done.

    Args:
        model: the module to train; moved to `device`; its train/eval mode is restored on return.
            Only parameters with ``requires_grad`` are optimized.
        loader: an iterable of ``(inputs, labels)`` batches, re-iterated once per epoch; `inputs` is a
            tensor, a mapping of tensors (``model(**inputs)``) or a list of strings for a model with
            ``tokenize(texts)``. A DataLoader or a list; without len(), ``cosine``/``linear``
            schedules need ``max_steps``.
        config: a :class:`TrainConfig`.
        hooks: training-time hooks, called in this order (then those the model contributes).
        loss_fn: ``loss_fn(outputs, labels) -> scalar``; default cross-entropy on the logits.
        seed: seeds data order and torch randomness (see the module docstring).
        run_dir: where checkpoints go (``run_dir/checkpoint``): every ``config.checkpoint_every``
            steps when set, and a final one marked complete; a checkpoint of the same run there is
            resumed (see the module docstring).
        quiet: hide the progress bar; None hides it when stdout is not a terminal.
        device: where to train.
        include_model_hooks: also run :func:`hooks_from_model` hooks.

    Raises:
        ConfigError: bad config or hooks. DataError: malformed or empty data.
        ArtifactError: an unreadable checkpoint. TrainingDivergedError: a NaN/inf loss.

    Warns:
        StaleCheckpointWarning: ``run_dir`` holds a checkpoint of another run (not resumed).
    """
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"train(config=...) must be a TrainConfig, got {type(config).__name__}.")
    started = time.perf_counter()
    device = torch.device(device)
    hook_list = _check_hooks(hooks)
    if include_model_hooks:
        hook_list += [h for h in hooks_from_model(model) if all(h is not g for g in hook_list)]
    loss_fn = loss_fn or _default_loss

    per_epoch = _steps_per_epoch(loader)
    if per_epoch == 0 and config.epochs > 0:
        raise DataError("The training data is empty (len() == 0).")
    if config.epochs == 0:
        total: int | None = 0
    elif per_epoch is not None:
        total = config.epochs * per_epoch
        if config.max_steps is not None:
            total = min(total, config.max_steps)
    else:
        total = config.max_steps

    checkpointer = Checkpointer(run_dir) if run_dir is not None else None
    was_training = model.training
    model.to(device)
    fingerprint = model_fingerprint(model) if checkpointer else ""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ModelError(f"{type(model).__name__} has no trainable parameters (requires_grad=True).")
    optimizer = _make_optimizer(params, config)
    scheduler = _make_scheduler(optimizer, config, total, per_epoch)

    ckpt = checkpointer.read() if checkpointer else None
    if ckpt is not None:
        reason = _stale_reason(
            ckpt, model=model, config=config, seed=seed, per_epoch=per_epoch, hooks=hook_list, fingerprint=fingerprint
        )
        if reason:
            warnings.warn(
                f"Not resuming from checkpoint {str(ckpt.path)!r}: {reason}. Training from scratch; the first "
                "new checkpoint replaces it.",
                StaleCheckpointWarning,
                stacklevel=2,
            )
            ckpt = None

    state = TrainState(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        config=config,
        total_steps=total,
        steps_per_epoch=per_epoch,
        resumed_from_step=ckpt.step if ckpt is not None else None,
        device=device,
        seed=seed,
    )
    meter = _Meter()

    def snapshot(complete: bool) -> None:
        assert checkpointer is not None
        tensors: dict[str, torch.Tensor] = {"rng/torch": torch.get_rng_state()}
        if device.type == "cuda":
            tensors["rng/cuda"] = torch.cuda.get_rng_state(device)
        meta = {
            "step": state.step,
            "epoch": state.epoch,
            "batch_in_epoch": state.batch_in_epoch,
            "total_steps": total,
            "steps_per_epoch": per_epoch,
            "complete": complete,
            "seed": seed,
            "config": config.identity(),
            "model_fingerprint": fingerprint,
            "last_loss": state.last_loss,
            "meter": dataclasses.asdict(meter),
            "history": state.history,
            "scheduler": to_json(scheduler.state_dict(), "scheduler", tensors),
            "optimizer": to_json(optimizer.state_dict(), "optimizer", tensors),
            "hooks": [
                {"type": type(h).__qualname__, "state": to_json(h.state_dict(), f"hooks/{i}", tensors)}
                for i, h in enumerate(hook_list)
            ],
        }
        checkpointer.write(meta, model, tensors)

    restore_rng: dict[str, torch.Tensor] | None = None
    steps_run = 0
    try:
        with torch.random.fork_rng(devices=_rng_devices(device)):
            torch.manual_seed(seed)
            model.train()
            for hook in hook_list:
                hook.on_train_start(state)
            if ckpt is not None:
                restore_rng = _restore(ckpt, state, meter, hook_list)
            done_before = ckpt is not None and ckpt.complete
            progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("loss {task.fields[loss]}"),
                disable=_quiet(quiet),
            )
            with progress:
                task = progress.add_task(
                    f"train epoch {state.epoch + 1}/{config.epochs}", total=total, completed=state.step, loss="-"
                )
                steps_run = _run_epochs(
                    loader, state, meter, hook_list, loss_fn, params, restore_rng, progress, task,
                    snapshot if checkpointer else None,
                )
            if checkpointer is not None and not (done_before and steps_run == 0):
                snapshot(complete=True)
            for hook in hook_list:
                hook.on_train_end(state)
    finally:
        model.train(was_training)
    return TrainResult(
        steps=state.step,
        epochs=state.epoch,
        final_loss=meter.final(),
        history=list(state.history),
        resumed_from_step=state.resumed_from_step,
        seconds=time.perf_counter() - started,
        steps_run=steps_run,
    )


def _restore(
    ckpt: LoadedCheckpoint, state: TrainState, meter: _Meter, hooks: list[TrainHook]
) -> dict[str, torch.Tensor]:
    """Apply a checkpoint to the model, optimizer, schedule, hooks and counters; return RNG state."""
    meta, tensors = ckpt.meta, ckpt.tensors
    load_model_tensors(state.model, ckpt.model_tensors, path=ckpt.path)
    where = str(ckpt.path)
    try:
        state.optimizer.load_state_dict(from_json(meta["optimizer"], tensors, where=where))
        state.scheduler.load_state_dict(from_json(meta["scheduler"], tensors, where=where))
    except (KeyError, ValueError) as exc:
        raise ArtifactError(f"Checkpoint {where!r}: cannot restore the optimizer state: {exc}.") from None
    for hook, saved in zip(hooks, meta.get("hooks", [])):
        hook.load_state_dict(from_json(saved.get("state", {}), tensors, where=where))
    state.step = int(meta["step"])
    state.epoch = int(meta["epoch"])
    state.batch_in_epoch = int(meta["batch_in_epoch"])
    state.last_loss = meta.get("last_loss")
    state.history = list(meta.get("history", []))
    for key, value in dict(meta.get("meter", {})).items():
        setattr(meter, key, value)
    return {k: v for k, v in tensors.items() if k.startswith("rng/")}


def _run_epochs(
    loader: Iterable[Any],
    state: TrainState,
    meter: _Meter,
    hooks: list[TrainHook],
    loss_fn: LossFn,
    params: list[nn.Parameter],
    restore_rng: dict[str, torch.Tensor] | None,
    progress: Any,
    task: Any,
    snapshot: Callable[[bool], None] | None,
) -> int:
    config, total, per_epoch = state.config, state.total_steps, state.steps_per_epoch
    every = config.checkpoint_every
    steps_run = 0
    pending = False
    while state.epoch < config.epochs and (total is None or state.step < total):
        _seed_epoch(loader, state.seed, state.epoch)
        iterator = iter(loader)
        for skipped in range(state.batch_in_epoch):
            try:
                next(iterator)
            except StopIteration:
                raise DataError(
                    f"Cannot resume: epoch {state.epoch} of the training data has only {skipped} batches, "
                    f"the checkpoint had used {state.batch_in_epoch}."
                ) from None
        if restore_rng is not None and state.batch_in_epoch > 0:
            torch.set_rng_state(restore_rng["rng/torch"])
            if "rng/cuda" in restore_rng:
                torch.cuda.set_rng_state(restore_rng["rng/cuda"], state.device)
        restore_rng = None
        progress.update(task, description=f"train epoch {state.epoch + 1}/{config.epochs}")
        finished = False
        while True:
            if per_epoch is not None and state.batch_in_epoch >= per_epoch:
                finished = True
                break
            if total is not None and state.step >= total:
                break
            try:
                batch = next(iterator)
            except StopIteration:
                finished = True
                break
            loss, lr = _train_step(state, batch, hooks, loss_fn, params)
            state.batch_in_epoch += 1
            state.step += 1
            steps_run += 1
            state.last_loss = loss
            meter.add(loss, lr)
            if state.step % config.log_every == 0 or state.step == total:
                _log(state, meter)
            for hook in hooks:
                hook.on_step_end(state)
            progress.update(task, advance=1, loss=f"{loss:.4f}")
            if snapshot is not None and every and state.step % every == 0:
                if per_epoch is not None and state.batch_in_epoch == per_epoch:
                    pending = True  # write it after on_epoch_end, as the start of the next epoch
                elif total is None or state.step < total:
                    snapshot(False)
        if not finished:
            break
        if state.batch_in_epoch == 0:
            raise DataError(f"The training data yielded no batches in epoch {state.epoch}.")
        for hook in hooks:
            hook.on_epoch_end(state)
        state.epoch += 1
        state.batch_in_epoch = 0
        meter.end_epoch()
        if pending and snapshot is not None and (total is None or state.step < total):
            snapshot(False)
        pending = False
    if meter.window_count:
        _log(state, meter)
    return steps_run


def _log(state: TrainState, meter: _Meter) -> None:
    if not meter.window_count:
        return
    state.history.append(
        {
            "step": state.step,
            "epoch": state.epoch,
            "loss": meter.window_sum / meter.window_count,
            "lr": meter.last_lr,
        }
    )
    meter.window_sum, meter.window_count = 0.0, 0


def _train_step(
    state: TrainState, batch: Any, hooks: list[TrainHook], loss_fn: LossFn, params: list[nn.Parameter]
) -> tuple[float, float]:
    """One optimizer step; returns the loss value and the learning rate it used."""
    model, optimizer = state.model, state.optimizer
    inputs, labels = _split_batch(batch, state.device)
    optimizer.zero_grad(set_to_none=True)
    outputs = run_model(model, inputs, state.device)
    loss = loss_fn(outputs, labels)
    for hook in hooks:
        extra = hook.extra_loss(state, (inputs, labels), outputs)
        if extra is not None:
            loss = loss + extra
    value = float(loss.detach())
    if not torch.isfinite(loss.detach()):
        raise TrainingDivergedError(
            f"The training loss is {value} at step {state.step + 1} (epoch {state.epoch}); lower lr, set "
            "grad_clip or check the data."
        )
    loss.backward()
    for hook in hooks:
        hook.on_before_optimizer_step(state)
    if state.config.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(params, state.config.grad_clip)
    lr = state.lr
    optimizer.step()
    state.scheduler.step()
    return value, lr
