"""The ``distill`` technique and :func:`distill`, the one-call Python entry point.

Who teaches whom in a recipe step:

* ``student`` unset: the model being compressed is the *student* (e.g. a model pruned or
  quantized by earlier steps) and it learns from the original model, ``context.teacher``, which
  ``torchslim.compress`` sets to the untouched input model. Without one (a handler called directly),
  the teacher is a frozen copy of the model taken at the start of the step (self-distillation).
* ``student`` set (``depth:2``, ``layers:3``, ``width:0.5``, a built-in model; see
  :mod:`torchslim.distillation.students`): the model being compressed is the *teacher*, and the
  step returns the trained student built from that spec.

Either way the training runs in the one training loop with a :class:`DistillationHook`, so every
check (incompatible outputs, unknown tap names, bad temperature) fails before the first step.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Iterable, Literal, Sequence

import torch
from torch import nn

from torchslim.core.batches import is_text_batch
from torchslim.core.config import TechniqueConfig
from torchslim.core.context import Context
from torchslim.core.errors import ConfigError, DataError
from torchslim.core.targets import Targets
from torchslim.core.technique import TECHNIQUES, StepOutcome
from torchslim.distillation.hook import DistillationHook, FeaturePair, resolve_pairs, zero_task_loss
from torchslim.distillation.losses import FEATURE_LOSSES
from torchslim.distillation.students import build_student, parse_student_spec
from torchslim.train.config import TrainConfig, TrainingFields, validate_training_fields
from torchslim.train.hooks import TrainHook
from torchslim.train.loop import TrainResult, train

CHECKPOINT_EVERY = 500
"""Steps between checkpoints of a ``distill`` step that has a run directory."""

FeatureLossName = Literal["hint", "attention", "hidden_mse", "attention_map", "cosine"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Distill(TrainingFields, TechniqueConfig):
    """Knowledge distillation (Hinton et al. 2015) with optional feature terms, as a training step.

    Loss: ``(1 - alpha) CE(z_s, y) + alpha T^2 KL(softmax(z_t/T) || softmax(z_s/T))
    + feature_weight * sum over pairs of the feature loss`` (see :mod:`torchslim.distillation.losses`).

    Attributes:
        temperature: T > 0 of the softened softmax.
        alpha: weight of the soft targets, in [0, 1] (0: hard labels and features only).
        features: feature pairs ``"teacher_module:student_module[:loss]"``, or ``"auto[:loss]"`` to
            pair layers by relative depth; empty: logits only.
        feature_loss: loss of the pairs that do not name one: ``hint`` (FitNets), ``attention``
            (attention transfer), ``hidden_mse`` / ``attention_map`` (TinyBERT), ``cosine`` (DistilBERT).
        feature_weight: weight of each feature term (>= 0).
        student: None to train the model being compressed against the original; or a student spec
            (``depth:K``, ``layers:N``, ``width:R``, a built-in model name or JSON model spec) built
            from the model being compressed, which then is the teacher.
        epochs, lr, optimizer, max_steps, weight_decay, schedule, warmup_steps, momentum, grad_clip:
            as in :class:`~torchslim.train.TrainConfig`.
    """

    name: ClassVar[str] = "distill"
    summary: ClassVar[str] = "Knowledge distillation (soft targets, feature hints) from the original or into a student."

    temperature: float = 4.0
    alpha: float = 0.9
    features: tuple[str, ...] = ()
    feature_loss: FeatureLossName = "hint"
    feature_weight: float = 1.0
    student: str | None = None

    def validate(self) -> None:
        import math

        if not math.isfinite(self.temperature):
            raise ConfigError(f"Distill.temperature={self.temperature!r} must be finite.")
        self.check("temperature", self.temperature, low=0.0, low_inclusive=False)
        self.check("alpha", self.alpha, low=0.0, high=1.0)
        self.check("feature_weight", self.feature_weight, low=0.0)
        for i, item in enumerate(self.features):
            parts = item.split(":")
            ok = (parts[0] == "auto" and len(parts) <= 2) or (len(parts) in (2, 3) and all(parts))
            if not ok:
                raise ConfigError(
                    f"Distill.features[{i}]={item!r} must look like 'teacher_module:student_module[:loss]' or 'auto[:loss]'."
                )
            loss = parts[-1] if (parts[0] == "auto" and len(parts) == 2) or len(parts) == 3 else None
            if loss is not None and loss not in FEATURE_LOSSES:
                from torchslim.core.errors import did_you_mean

                raise ConfigError(
                    f"Distill.features[{i}]={item!r}: unknown feature loss {loss!r}; known: {sorted(FEATURE_LOSSES)}."
                    + did_you_mean(loss, list(FEATURE_LOSSES))
                )
        if self.student is not None:
            try:
                parse_student_spec(self.student)
            except ConfigError as exc:
                raise ConfigError(f"Distill.student: {exc}") from None
        validate_training_fields(self)


KD = Distill
"""Alias: ``ts.distillation.KD(temperature=4.0, alpha=0.9)``."""


@dataclasses.dataclass
class DistillResult:
    """What :func:`distill` did: the trained `student`, the loop's `train` result, the feature `pairs`
    used, the mean of each loss term (`terms`) and the adapters' parameter count (removed after)."""

    student: nn.Module
    train: TrainResult
    pairs: list[FeaturePair]
    terms: dict[str, float]
    adapter_parameters: int

    def info(self) -> dict[str, Any]:
        return {
            "steps": self.train.steps,
            "epochs": self.train.epochs,
            "final_loss": self.train.final_loss,
            "resumed_from_step": self.train.resumed_from_step,
            "seconds": self.train.seconds,
            "pairs": [p.to_dict() for p in self.pairs],
            "loss_terms": self.terms,
            "adapter_parameters": self.adapter_parameters,
        }


def example_from(loader: Iterable[Any], *, batch_size: int = 2) -> Any:
    """The inputs of the first batch of `loader`, cut to `batch_size` samples (texts stay texts)."""
    for batch in loader:
        inputs = batch[0] if isinstance(batch, (list, tuple)) and len(batch) == 2 else batch
        if isinstance(inputs, torch.Tensor):
            return inputs[:batch_size]
        if isinstance(inputs, dict):
            return {k: v[:batch_size] if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
        if is_text_batch(inputs):
            return list(inputs[:batch_size])
        if isinstance(inputs, (list, tuple)):
            return type(inputs)(v[:batch_size] if isinstance(v, torch.Tensor) else v for v in inputs)
        return inputs
    raise DataError("The training data is empty; distillation needs at least one batch.")


def distill(
    teacher: nn.Module,
    student: nn.Module | str,
    loader: Iterable[Any],
    *,
    temperature: float = 4.0,
    alpha: float = 0.9,
    pairs: str | Sequence[Any] | None = None,
    feature_loss: str = "hint",
    feature_weight: float = 1.0,
    config: TrainConfig | None = None,
    hooks: Sequence[TrainHook] = (),
    loss_fn: Any = None,
    seed: int = 0,
    run_dir: str | Path | None = None,
    quiet: bool | None = None,
    device: str | torch.device = "cpu",
    example_input: Any = None,
) -> DistillResult:
    """Train `student` (a module, or a student spec built from `teacher`) to mimic `teacher` on `loader`.

    `teacher` is never modified. Extra `hooks` (gradual pruning, QAT) run in the same training loop;
    `loss_fn`, when given, replaces the loop's task loss and the hook then adds the whole
    distillation loss including ``(1 - alpha)`` times cross-entropy. Forward hooks and adapters are
    removed from the student on return, also when training raises. `example_input` defaults to the
    first two samples of `loader`.
    """
    example = example_input if example_input is not None else example_from(loader)
    student_model = build_student(teacher, student, example_input=example)
    own_loss = loss_fn is not None
    hook = DistillationHook(
        teacher, student_model, temperature=temperature, alpha=alpha, pairs=pairs, feature_loss=feature_loss,
        feature_weight=feature_weight, example_input=example, task_loss_in_loop=not own_loss, seed=seed,
    )
    try:
        result = train(
            student_model, loader, config=config or TrainConfig(), hooks=[hook, *hooks],
            loss_fn=loss_fn if own_loss else None, seed=seed, run_dir=run_dir, quiet=quiet, device=device,
        )
    finally:
        hook.close()
    student_model.eval()
    return DistillResult(
        student=student_model, train=result, pairs=list(hook.pairs), terms=hook.mean_terms(),
        adapter_parameters=hook.adapter_parameters,
    )


def _frozen_copy(model: nn.Module) -> nn.Module:
    teacher = copy.deepcopy(model)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


@TECHNIQUES.handles(Distill)
def distill_step(model: nn.Module, config: Distill, *, targets: Targets | None, context: Context) -> StepOutcome:
    """Handler of :class:`Distill` (see the module docstring for who teaches whom).

    With `targets`, only the selected modules of the student are trained.
    """
    from torchslim.measure.params import count_parameters

    loader = context.require_data("train", technique="distill")
    example = context.example_input if context.example_input is not None else example_from(loader)
    if config.student is None:
        context_teacher = getattr(context, "teacher", None)
        teacher = context_teacher if context_teacher is not None else _frozen_copy(model)
        source = "context.teacher (the original model)" if context_teacher is not None else (
            "a frozen copy of the model at the start of the step")
        student = model
    else:
        teacher = model
        source = "the model being compressed"
        student = build_student(model, config.student, example_input=example)
    pairs = resolve_pairs(teacher, student, list(config.features), loss=config.feature_loss, weight=config.feature_weight)
    run_dir = Path(context.run_dir) / "distill" if context.run_dir is not None else None
    train_config = config.train_config(checkpoint_every=CHECKPOINT_EVERY if run_dir is not None else None)
    from torchslim.train import training_scope

    with training_scope(student, targets=targets, threads=context.threads):
        result = distill(
            teacher, student, loader, temperature=config.temperature, alpha=config.alpha, pairs=pairs,
            config=train_config, seed=context.seed, run_dir=run_dir, quiet=True if context.quiet else None,
            device=context.device, example_input=example,
        )
    info = result.info()
    info.update({
        "teacher": source,
        "student": config.student or "the model being compressed",
        "teacher_parameters": count_parameters(teacher),
        "student_parameters": count_parameters(result.student),
        "temperature": config.temperature,
        "alpha": config.alpha,
    })
    return StepOutcome(model=result.student, info=info)


__all__ = ["CHECKPOINT_EVERY", "KD", "Distill", "DistillResult", "distill", "distill_step", "example_from", "zero_task_loss"]
