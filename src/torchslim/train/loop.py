"""The one small training loop that every training-time technique runs.

``train(model, loader, config=..., hooks=[...])`` fine-tunes `model` in place. Techniques plug in
as :class:`~torchslim.train.hooks.TrainHook` objects; a handler composes them simply by passing a
list (``hooks=[kd_hook, mask_hook]``), and modules of the model may contribute their own (see
:func:`~torchslim.train.hooks.hooks_from_model`). Techniques call it through
:func:`torchslim.train.train_in_context`, which takes device, seed, threads, verbosity and the run
directory from the :class:`~torchslim.core.Context`.

Where each concern lives:

* determinism (forked and per-epoch seeded RNG): :mod:`torchslim.train.determinism`;
* checkpoints and resume (only a checkpoint of the same run is resumed; a killed and resumed run
  ends with the same weights as an uninterrupted one): :mod:`torchslim.train.resume`;
* optimizer, schedule and planned steps: :mod:`torchslim.train.optim`;
* the epochs, steps, logs and early stopping: :mod:`torchslim.train.epochs`,
  :mod:`torchslim.train.meter`;
* the progress bar (rich): :mod:`torchslim.train.progress`.

So shuffling, dropout and other torch randomness repeat bit for bit for a given seed on the same
machine and thread count. Python's ``random`` and NumPy's global RNG are not touched. From a
complete checkpoint the trained weights are restored without training again (hooks still get
``on_train_start`` and ``on_train_end``). Unreadable or inconsistent checkpoint files raise
:class:`~torchslim.core.errors.ArtifactError` naming the file.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchslim.core.batches import logits_of
from torchslim.core.errors import ConfigError, ModelError
from torchslim.train.batch import LossFn, TrainingDivergedError, default_loss, run_model
from torchslim.train.checkpoint import Checkpointer, LoadedCheckpoint, model_fingerprint
from torchslim.train.config import TrainConfig
from torchslim.train.determinism import rng_devices
from torchslim.train.distributed import data_parallel
from torchslim.train.epochs import Run, run_epochs
from torchslim.train.hooks import TrainHook, TrainState, hooks_from_model
from torchslim.train.meter import Meter
from torchslim.train.optim import make_optimizer, make_scheduler, planned_steps, steps_per_epoch
from torchslim.train.progress import ProgressBar
from torchslim.train.resume import Snapshots, StaleCheckpointWarning, restore, resumable


@dataclasses.dataclass
class TrainResult:
    """What a call of :func:`train` did.

    `steps` counts all optimizer steps of the run including those restored from a checkpoint,
    `steps_run` only those taken by this call; `epochs` counts completed passes over the data;
    `final_loss` is the mean loss of the last pass (the partial one when ``max_steps`` cut it short),
    None when no step was taken; `resumed_from_step` is the checkpoint step this call started from
    (None for a fresh start); `seconds` is this call's wall time; `stopped_early` says whether
    ``early_stop_patience`` ended the run before ``epochs`` passes.
    """

    steps: int
    epochs: int
    final_loss: float | None
    history: list[dict[str, Any]]
    resumed_from_step: int | None
    seconds: float
    steps_run: int = 0
    stopped_early: bool = False


def _check_hooks(hooks: Sequence[Any], model: nn.Module, include_model_hooks: bool) -> list[TrainHook]:
    checked: list[TrainHook] = []
    for i, hook in enumerate(hooks):
        if not isinstance(hook, TrainHook):
            raise ConfigError(f"hooks[{i}] must be a TrainHook, got {type(hook).__name__}.")
        checked.append(hook)
    if include_model_hooks:
        checked += [h for h in hooks_from_model(model) if all(h is not g for g in checked)]
    return checked


def _new_state(
    model: nn.Module, loader: Iterable[Any], config: TrainConfig, seed: int, device: torch.device
) -> TrainState:
    """Move `model` to `device` and build the optimizer, the schedule and the state of a fresh run."""
    per_epoch = steps_per_epoch(loader)
    total = planned_steps(config, per_epoch)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ModelError(f"{type(model).__name__} has no trainable parameters (requires_grad=True).")
    optimizer = make_optimizer(params, config)
    return TrainState(
        model=model,
        optimizer=optimizer,
        scheduler=make_scheduler(optimizer, config, total, per_epoch),
        config=config,
        total_steps=total,
        steps_per_epoch=per_epoch,
        device=device,
        seed=seed,
    )


def _run(run: Run, ckpt: LoadedCheckpoint | None) -> None:
    """The body of a call, inside the forked RNG: start hooks, resume, epochs, final checkpoint, end hooks."""
    state = run.state
    torch.manual_seed(state.seed)
    state.model.train()
    for hook in run.hooks:
        hook.on_train_start(state)
    if ckpt is not None:  # after on_train_start, so hooks' own state is replaced by the checkpoint's
        run.restore_rng = restore(ckpt, state, run.meter, run.hooks)
    if state.parallel is not None:  # after hooks and resume changed the model: DDP, same state on every rank
        state.parallel.wrap()
    with run.progress:
        run_epochs(run)
    if run.snapshot is not None and not (ckpt is not None and ckpt.complete and run.steps_run == 0):
        run.snapshot(True)
    if state.parallel is not None:  # no rank goes on before rank 0's last checkpoint is written
        state.parallel.check("at the end of training")
        state.parallel.barrier()
    for hook in run.hooks:
        hook.on_train_end(state)


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
    teachers: Sequence[nn.Module] = (),
    label: str = "train",
) -> TrainResult:
    # long: the public loop's documented signature; the body is ~25 lines of composition
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
        seed: seeds data order and torch randomness (see :mod:`torchslim.train.determinism`).
        run_dir: where checkpoints go (``run_dir/checkpoint``): every ``config.checkpoint_every``
            steps when set, and a final one marked complete; a checkpoint of the same run there is
            resumed (see :mod:`torchslim.train.resume`).
        quiet: hide the progress bar; None hides it when stdout is not a terminal.
        device: where to train.
        include_model_hooks: also run :func:`hooks_from_model` hooks.
        teachers: modules besides `model` that must be the same on every process of a data-parallel
            run (a hook's ``teacher`` attribute counts too); see :mod:`torchslim.train.distributed`.
        label: what trains, as the progress bar names it ("fine-tune", "QAT", "distill", ...).

    Raises:
        ConfigError: bad config or hooks. DataError: malformed or empty data.
        ArtifactError: an unreadable checkpoint. TrainingDivergedError: a NaN/inf loss.

    Warns:
        StaleCheckpointWarning: ``run_dir`` holds a checkpoint of another run (not resumed).
    """
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"train(config=...) must be a TrainConfig, got {type(config).__name__}.")
    started, was_training = time.perf_counter(), model.training
    hook_list = _check_hooks(hooks, model, include_model_hooks)
    checkpointer = Checkpointer(run_dir) if run_dir is not None else None
    shared = [*teachers, *(getattr(h, "teacher", None) for h in hook_list)]
    parallel, loader, where = data_parallel(
        model, loader, mode=config.distributed, device=torch.device(device), shared=shared
    )
    state = _new_state(model, loader, config, seed, where)
    state.parallel = parallel
    fingerprint = model_fingerprint(model) if checkpointer else ""
    ckpt = resumable(checkpointer, state=state, hooks=hook_list, fingerprint=fingerprint)
    state.resumed_from_step = ckpt.step if ckpt is not None else None
    meter = Meter()
    writes = checkpointer is not None and (parallel is None or parallel.world.is_main)  # rank 0 writes
    snapshots = Snapshots(checkpointer, state, meter, hook_list, fingerprint) if checkpointer and writes else None
    quiet = True if parallel is not None and not parallel.world.is_main else quiet
    params = [p for p in model.parameters() if p.requires_grad]
    run = Run(
        loader,
        state,
        meter,
        hook_list,
        loss_fn or default_loss,
        params,
        ProgressBar(state, quiet=quiet, label=label),
        snapshots,
    )
    try:
        with torch.random.fork_rng(devices=rng_devices(state.device)):
            _run(run, ckpt)
    finally:
        model.train(was_training)
    return TrainResult(
        steps=state.step,
        epochs=state.epoch,
        final_loss=meter.final(),
        history=list(state.history),
        resumed_from_step=state.resumed_from_step,
        seconds=time.perf_counter() - started,
        steps_run=run.steps_run,
        stopped_early=meter.stopped_early,
    )


__all__ = [
    "LossFn",
    "StaleCheckpointWarning",
    "TrainResult",
    "TrainingDivergedError",
    "logits_of",
    "run_model",
    "train",
]
