"""How a technique trains: :func:`train_in_context`, the one call every training step makes.

A technique that trains (fine-tuning, QAT, distillation, pruning recovery, later lottery
rewinding) holds one nested ``train: TrainConfig`` in its config and calls
``train_in_context(model, config=cfg.train, context=context, technique="...")``. Everything that
is the same for every technique comes from the :class:`~torchslim.core.Context` the same way:
the training split, device, seed, thread count, verbosity and the checkpoint directory
(``context.run_dir / <technique>``). Techniques add hooks and losses, never loop code.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from torch import nn

from torchslim.core.context import Context
from torchslim.core.targets import Targets
from torchslim.train import loop
from torchslim.train.batch import LossFn
from torchslim.train.config import TrainConfig
from torchslim.train.hooks import TrainHook
from torchslim.train.loop import TrainResult
from torchslim.train.scope import training_scope

CHECKPOINT_EVERY = 500
"""Steps between checkpoints of a technique's training when the context has a run directory."""


TRAINING_LABELS = {"finetune": "fine-tune", "quantize": "QAT", "distill": "distill"}
"""Technique name -> how the progress bar names what trains (other names are shown as they are)."""


def training_label(technique: str) -> str:
    """The progress label of `technique`'s training: ``"QAT"`` for ``"quantize"``, ``"<name> recovery"``
    for a pruning technique's recovery, else the technique as it is named."""
    name = technique.split("/")[0]
    if "prun" in name:
        return f"{name} recovery"
    return TRAINING_LABELS.get(name, technique)


def train_in_context(
    model: nn.Module,
    *,
    config: TrainConfig,
    context: Context,
    technique: str,
    hooks: Sequence[TrainHook] = (),
    loss_fn: LossFn | None = None,
    targets: Targets | None = None,
    loader: Iterable[Any] | None = None,
    checkpoints: bool = True,
) -> TrainResult:
    """Train `model` in place with the one loop, as `context` says.

    Args:
        model: the module to train (moved to ``context.device``).
        config: the technique's nested training config.
        context: data (``context.data.train`` unless `loader` is given), device, seed, threads,
            quiet, run directory.
        technique: the technique's name: names the data error and the checkpoint sub-directory.
        hooks: training-time hooks of the technique (loss terms, masks, quantizer clamps).
        loss_fn: replaces the task loss (default: cross-entropy on the logits).
        targets: train only the parameters of these modules (the rest are frozen for the call).
        loader: train on this instead of ``context.data.train`` (a student's own data view).
        checkpoints: write checkpoints under ``context.run_dir / technique`` when there is one.
    """
    data = loader if loader is not None else context.require_data("train", technique=technique)
    run_dir = context.run_dir / technique if (checkpoints and context.run_dir is not None) else None
    if run_dir is not None and config.checkpoint_every is None:
        config = config.replace(checkpoint_every=CHECKPOINT_EVERY)
    with training_scope(model, targets=targets, threads=context.threads):
        return loop.train(  # through the module, so a test can watch what every technique passes
            model,
            data,
            config=config,
            hooks=list(hooks),
            loss_fn=loss_fn,
            seed=context.seed,
            run_dir=run_dir,
            quiet=True if context.quiet else None,
            device=context.device,
            label=training_label(technique),
        )


def result_info(result: TrainResult) -> dict[str, Any]:
    """The facts of a training run that a step's report shows."""
    return {
        "steps": result.steps,
        "epochs": result.epochs,
        "final_loss": result.final_loss,
        "resumed_from_step": result.resumed_from_step,
        "seconds": result.seconds,
    }
