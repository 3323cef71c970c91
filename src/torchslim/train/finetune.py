"""The ``finetune`` technique: train the model on the train split with the one training loop.

With `targets`, only the parameters of the selected modules are trained (the rest are frozen for
the step and unfrozen afterwards); without, every trainable parameter is. With a
``context.run_dir``, checkpoints go to ``run_dir/finetune`` every :data:`CHECKPOINT_EVERY` steps
plus a final one marked complete, so a rerun resumes or skips the training (see
:mod:`torchslim.train.loop`).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
from torch import nn

from torchslim.core.config import TechniqueConfig
from torchslim.core.context import Context
from torchslim.core.targets import Targets
from torchslim.core.technique import TECHNIQUES, StepOutcome
from torchslim.train.config import TrainingFields, validate_training_fields
from torchslim.train.loop import train
from torchslim.train.scope import training_scope

CHECKPOINT_EVERY = 500
"""Steps between checkpoints of a ``finetune`` step that has a run directory."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class FineTune(TrainingFields, TechniqueConfig):
    """Fine-tune on the train split (after pruning or quantization, to recover accuracy).

    The fields mean what they mean in :class:`~torchslim.train.TrainConfig`.
    """

    name: ClassVar[str] = "finetune"
    summary: ClassVar[str] = "Train the model (or the target modules) on the train split."

    def validate(self) -> None:
        validate_training_fields(self)


@TECHNIQUES.handles(FineTune)
def finetune(model: nn.Module, config: FineTune, *, targets: Targets | None, context: Context) -> StepOutcome:
    """Handler of :class:`FineTune`: train on ``context.data.train`` and report steps and loss."""
    loader = context.require_data("train", technique="finetune")
    run_dir = context.run_dir / "finetune" if context.run_dir is not None else None
    train_config = config.train_config(checkpoint_every=CHECKPOINT_EVERY if run_dir is not None else None)
    with training_scope(model, targets=targets, threads=context.threads) as frozen:
        result = train(
            model,
            loader,
            config=train_config,
            seed=context.seed,
            run_dir=run_dir,
            quiet=True if context.quiet else None,
            device=context.device,
        )
    return StepOutcome(
        model=model,
        info={
            "steps": result.steps,
            "epochs": result.epochs,
            "final_loss": result.final_loss,
            "resumed_from_step": result.resumed_from_step,
            "seconds": result.seconds,
            "trained_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)
            - sum(p.numel() for p in frozen),
        },
    )
