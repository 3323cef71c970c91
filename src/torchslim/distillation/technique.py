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
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from torchslim.core.batches import is_text_batch
from torchslim.core.config import TechniqueConfig
from torchslim.core.context import Context
from torchslim.core.errors import ConfigError, DataError, did_you_mean
from torchslim.core.targets import Targets
from torchslim.core.technique import TECHNIQUES, StepOutcome
from torchslim.distillation.adaptive import Candidate, SettingsChoice, choose_settings
from torchslim.distillation.hook import DistillationHook, FeaturePair, resolve_pairs, zero_task_loss
from torchslim.distillation.losses import FEATURE_LOSSES
from torchslim.distillation.students import build_student, parse_student_spec
from torchslim.measure.params import count_parameters
from torchslim.train import TrainConfig, TrainHook, TrainResult, result_info, train_in_context, training_scope
from torchslim.train.batch import LossFn
from torchslim.train.config import renamed_training_keys

FeatureLossName = Literal["hint", "attention", "hidden_mse", "attention_map", "cosine"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Distill(TechniqueConfig):
    """Knowledge distillation (Hinton et al. 2015) with optional feature terms, as a training step.

    Loss: ``(1 - alpha) CE(z_s, y) + alpha T^2 KL(softmax(z_t/T) || softmax(z_s/T))
    + feature_weight * sum over pairs of the feature loss`` (see :mod:`torchslim.distillation.losses`).

    Attributes:
        temperature: T > 0 of the softened softmax; None (the default): chosen by a probe.
        alpha: weight of the soft targets, in [0, 1] (0: hard labels and features only); None (the
            default): chosen by a probe, which may fall back to plain fine-tuning (alpha = 0).
        probe_fraction: when temperature or alpha is None, the share of the training budget (in
            optimizer steps, over all candidates) a probe may spend choosing them on the validation
            split (:mod:`torchslim.distillation.adaptive`); 0 never probes. The report's
            ``settings`` says what was chosen and why.
        features: feature pairs ``"teacher_module:student_module[:loss]"``, or ``"auto[:loss]"`` to
            pair layers by relative depth; empty: logits only.
        feature_loss: loss of the pairs that do not name one: ``hint`` (FitNets), ``attention``
            (attention transfer), ``hidden_mse`` / ``attention_map`` (TinyBERT), ``cosine`` (DistilBERT).
        feature_weight: weight of each feature term (>= 0).
        student: None to train the model being compressed against the original; or a student spec
            (``depth:K``, ``layers:N``, ``width:R``, a built-in model name or JSON model spec) built
            from the model being compressed, which then is the teacher.
        train: how to train (:class:`~torchslim.train.TrainConfig`); YAML
            ``config: {temperature: 2.0, alpha: 0.5, train: {epochs: 2}}``. The flat keys of earlier
            recipes (``epochs``, ``lr``, ...) still load, with a FutureWarning naming the new key.
    """

    name: ClassVar[str] = "distill"
    summary: ClassVar[str] = "Knowledge distillation (soft targets, feature hints) from the original or into a student."

    temperature: float | None = None
    alpha: float | None = None
    probe_fraction: float = 0.2
    features: tuple[str, ...] = ()
    feature_loss: FeatureLossName = "hint"
    feature_weight: float = 1.0
    student: str | None = None
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    renamed: ClassVar[Mapping[str, str]] = renamed_training_keys()

    def validate(self) -> None:
        if self.temperature is not None:
            if not math.isfinite(self.temperature):
                raise ConfigError(f"Distill.temperature={self.temperature!r} must be finite.")
            self.check("temperature", self.temperature, low=0.0, low_inclusive=False)
        if self.alpha is not None:
            self.check("alpha", self.alpha, low=0.0, high=1.0)
        self.check("probe_fraction", self.probe_fraction, low=0.0, high=0.5)
        self.check("feature_weight", self.feature_weight, low=0.0)
        for i, item in enumerate(self.features):
            parts = item.split(":")
            ok = (parts[0] == "auto" and len(parts) <= 2) or (len(parts) in (2, 3) and all(parts))
            if not ok:
                raise ConfigError(
                    f"Distill.features[{i}]={item!r} must look like 'teacher_module:student_module[:loss]' "
                    "or 'auto[:loss]'."
                )
            loss = parts[-1] if (parts[0] == "auto" and len(parts) == 2) or len(parts) == 3 else None
            if loss is not None and loss not in FEATURE_LOSSES:
                raise ConfigError(
                    f"Distill.features[{i}]={item!r}: unknown feature loss {loss!r}; known: {sorted(FEATURE_LOSSES)}."
                    + did_you_mean(loss, list(FEATURE_LOSSES))
                )
        if self.student is not None:
            try:
                parse_student_spec(self.student)
            except ConfigError as exc:
                raise ConfigError(f"Distill.student: {exc}") from None


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
        """The facts a step's report shows: the training run's, then the distillation's own."""
        return {
            **result_info(self.train),
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
    context: Context | None = None,
    hooks: Sequence[TrainHook] = (),
    loss_fn: LossFn | None = None,
    targets: Targets | None = None,
    example_input: Any = None,
) -> DistillResult:
    # long: a public entry point whose keyword-only options are one per line; the body is 25 lines
    """Train `student` (a module, or a student spec built from `teacher`) to mimic `teacher` on `loader`.

    The training is the one loop's, through :func:`~torchslim.train.train_in_context`: device, seed,
    threads, verbosity and the checkpoint directory (``context.run_dir / "distill"``) come from
    `context` (default ``Context()``: CPU, seed 0, no checkpoints); `config` defaults to
    ``TrainConfig()``. `teacher` is never modified. Extra `hooks` (gradual pruning, QAT) run in the
    same loop; `loss_fn`, when given, replaces the loop's task loss and the hook then adds the whole
    distillation loss including ``(1 - alpha)`` times cross-entropy. With `targets`, only those
    modules of the student are trained (the feature adapters always are). Forward hooks and adapters
    are removed from the student on return, also when training raises. `example_input` defaults to
    the first two samples of `loader`.
    """
    context = context if context is not None else Context()
    example = example_input if example_input is not None else example_from(loader)
    student_model = build_student(teacher, student, example_input=example)
    own_loss = loss_fn is not None
    # freeze outside the targets before the hook attaches its adapters, which always train
    with training_scope(student_model, targets=targets):
        hook = DistillationHook(
            teacher,
            student_model,
            temperature=temperature,
            alpha=alpha,
            pairs=pairs,
            feature_loss=feature_loss,
            feature_weight=feature_weight,
            example_input=example,
            task_loss_in_loop=not own_loss,
            seed=context.seed,
        )
        try:
            result = train_in_context(
                student_model,
                config=config or TrainConfig(),
                context=context,
                technique="distill",
                hooks=[hook, *hooks],
                loss_fn=loss_fn,
                loader=loader,
            )
        finally:
            hook.close()
    student_model.eval()
    return DistillResult(
        student=student_model,
        train=result,
        pairs=list(hook.pairs),
        terms=hook.mean_terms(),
        adapter_parameters=hook.adapter_parameters,
    )


def _frozen_copy(model: nn.Module) -> nn.Module:
    teacher = copy.deepcopy(model)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def _roles(model: nn.Module, config: Distill, context: Context, example: Any) -> tuple[nn.Module, str, nn.Module]:
    """(teacher, where the teacher comes from, student) of a step (see the module docstring)."""
    if config.student is not None:
        return model, "the model being compressed", build_student(model, config.student, example_input=example)
    if context.teacher is not None:
        return context.teacher, "context.teacher (the original model)", model
    return _frozen_copy(model), "a frozen copy of the model at the start of the step", model


def choose_step_settings(
    config: Distill,
    teacher: nn.Module,
    student: nn.Module,
    *,
    pairs: list[FeaturePair],
    loader: Iterable[Any],
    example: Any,
    targets: Targets | None,
    context: Context,
) -> SettingsChoice:
    """The step's temperature and alpha: the config's, or chosen by a probe on ``context.data.validation``
    (:func:`torchslim.distillation.adaptive.choose_settings`); the probe's runs are quiet and never
    checkpoint. `student` is not modified."""
    probe_context = context.replace(quiet=True, run_dir=None)

    def train_candidate(candidate: Candidate, model: nn.Module, short: TrainConfig) -> None:
        distill(
            teacher,
            model,
            loader,
            temperature=candidate.temperature,
            alpha=candidate.alpha,
            pairs=pairs,
            config=short,
            context=probe_context,
            targets=targets,
            example_input=example,
        )

    data = context.data
    return choose_settings(
        temperature=config.temperature,
        alpha=config.alpha,
        student=student,
        train_candidate=train_candidate,
        config=config.train,
        loader=loader,
        validation=data.validation if data is not None else None,
        test=data.test if data is not None else None,
        probe_fraction=config.probe_fraction,
        teacher=teacher,
    )


@TECHNIQUES.handles(Distill)
def distill_step(model: nn.Module, config: Distill, *, targets: Targets | None, context: Context) -> StepOutcome:
    """Handler of :class:`Distill` (see the module docstring for who teaches whom).

    With `targets`, only the selected modules of the student are trained. Unset temperature or
    alpha are chosen first (:func:`choose_step_settings`); ``info["settings"]`` says what and why.
    """
    loader = context.require_data("train", technique="distill")
    example = context.example_input if context.example_input is not None else example_from(loader)
    teacher, source, student = _roles(model, config, context, example)
    pairs = resolve_pairs(
        teacher, student, list(config.features), loss=config.feature_loss, weight=config.feature_weight
    )
    choice = choose_step_settings(
        config, teacher, student, pairs=pairs, loader=loader, example=example, targets=targets, context=context
    )
    result = distill(
        teacher,
        student,
        loader,
        temperature=choice.temperature,
        alpha=choice.alpha,
        pairs=pairs,
        config=config.train,
        context=context,
        targets=targets,
        example_input=example,
    )
    info = result.info()
    info.update(
        {
            "teacher": source,
            "student": config.student or "the model being compressed",
            "teacher_parameters": count_parameters(teacher),
            "student_parameters": count_parameters(result.student),
            "temperature": choice.temperature,
            "alpha": choice.alpha,
            "settings": choice.info(),
        }
    )
    return StepOutcome(model=result.student, info=info)


__all__ = [
    "KD",
    "Distill",
    "DistillResult",
    "choose_step_settings",
    "distill",
    "distill_step",
    "example_from",
    "zero_task_loss",
]
