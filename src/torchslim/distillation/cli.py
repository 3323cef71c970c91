"""What ``torchslim distill TEACHER --student SPEC --data D --out DIR`` runs.

The command is a one-step recipe: a :class:`~torchslim.distillation.technique.Distill` step with
the given student spec, run by ``torchslim.compress`` on the teacher, so the report compares the
teacher (before) with the trained student (after) and the artifact holds the student. The typer
command in ``torchslim.cli.main`` resolves the model and data and calls :func:`distill_recipe`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from torchslim.core.recipe import Recipe, Step
from torchslim.distillation.technique import Distill, FeatureLossName
from torchslim.train.config import Optimizer, TrainConfig


def distill_recipe(
    *,
    student: str,
    epochs: int = 1,
    lr: float = 1e-3,
    temperature: float | None = None,
    alpha: float | None = None,
    features: Sequence[str] = (),
    feature_loss: str = "hint",
    feature_weight: float = 1.0,
    max_steps: int | None = None,
    optimizer: str = "adam",
) -> Recipe:
    """The one-step recipe of ``torchslim distill``; every value is validated (ConfigError naming it;
    the casts only tell the type checker what the configs check when built). `temperature` or
    `alpha` left None is chosen by the step's probe on the validation split."""
    return Recipe(
        [
            Step(
                Distill(
                    student=student,
                    temperature=temperature,
                    alpha=alpha,
                    features=tuple(features),
                    feature_loss=cast(FeatureLossName, feature_loss),
                    feature_weight=feature_weight,
                    train=TrainConfig(epochs=epochs, lr=lr, max_steps=max_steps, optimizer=cast(Optimizer, optimizer)),
                )
            )
        ]
    )
