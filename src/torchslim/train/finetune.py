"""The ``finetune`` technique: train the model on the train split with the one training loop.

With `targets`, only the parameters of the selected modules are trained (the rest are frozen for
the step and unfrozen afterwards); without, every trainable parameter is. Training goes through
:func:`~torchslim.train.train_in_context`, so device, seed, threads and verbosity come from the
Context, and with a ``context.run_dir`` checkpoints go to ``run_dir/finetune`` (so a rerun
resumes or skips the training; see :mod:`torchslim.train.resume`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import ClassVar

from torch import nn

from torchslim.core.config import TechniqueConfig
from torchslim.core.context import Context
from torchslim.core.targets import Targets
from torchslim.core.technique import TECHNIQUES, StepOutcome
from torchslim.train.config import TrainConfig, renamed_training_keys
from torchslim.train.step import result_info, train_in_context


@dataclasses.dataclass(frozen=True, kw_only=True)
class FineTune(TechniqueConfig):
    """Fine-tune on the train split (after pruning or quantization, to recover accuracy).

    Minimises the task loss (cross-entropy by default) over the trainable parameters with the
    optimizer and schedule of `train`.

    Attributes:
        train: how to train (:class:`~torchslim.train.TrainConfig`); YAML
            ``config: {train: {epochs: 1, lr: 0.001}}``. The flat keys of earlier recipes
            (``epochs``, ``lr``, ...) still load, with a FutureWarning naming the new key.
    """

    name: ClassVar[str] = "finetune"
    summary: ClassVar[str] = "Train the model (or the target modules) on the train split."
    renamed: ClassVar[Mapping[str, str]] = renamed_training_keys()

    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)


def _trainable(model: nn.Module, targets: Targets | None) -> int:
    """Number of parameters a step with `targets` trains."""
    keep: set[int] | None = None
    if targets is not None:
        keep = {id(p) for _, module in targets.resolve(model) for p in module.parameters()}
    return sum(p.numel() for p in model.parameters() if p.requires_grad and (keep is None or id(p) in keep))


@TECHNIQUES.handles(FineTune)
def finetune(model: nn.Module, config: FineTune, *, targets: Targets | None, context: Context) -> StepOutcome:
    """Handler of :class:`FineTune`: train on ``context.data.train`` and report steps and loss."""
    result = train_in_context(model, config=config.train, context=context, technique="finetune", targets=targets)
    return StepOutcome(model=model, info={**result_info(result), "trained_parameters": _trainable(model, targets)})
