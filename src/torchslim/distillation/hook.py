"""`DistillationHook`: knowledge distillation as a hook of the one training loop.

The hook runs the teacher (eval mode, ``torch.no_grad``) on every training batch and adds the
distillation terms to the loss of the student that the loop trains, so distillation composes with
any other hook (gradual pruning, QAT) in the same fine-tuning::

    with DistillationHook(teacher, student, temperature=4, alpha=0.9,
                          pairs="auto", example_input=x) as kd:
        train(student, loader, config=TrainConfig(epochs=2), hooks=[kd, agp_hook])

Loss. With ``z_s``/``z_t`` the logits, ``y`` the labels and ``F`` the tapped features, the total
the loop minimises is Hinton's mixture plus the weighted feature terms::

    L = (1 - alpha) CE(z_s, y) + alpha T^2 KL(softmax(z_t/T) || softmax(z_s/T)) + sum_k w_k L_k(F_s, F_t)

The loop itself always adds its task loss (``loss_fn``, cross-entropy by default). With
``task_loss_in_loop=True`` (the default, for the loop's default cross-entropy) the hook returns
``alpha (T^2 KL - CE) + features``, so the sum is exactly ``L`` above; with
``task_loss_in_loop=False`` the hook returns all of ``L`` and the caller passes
``loss_fn=zero_task_loss`` (or its own extra task term).

Adapters. Feature losses whose widths differ own a learned adapter (FitNets regressor, TinyBERT
``W_h``). They must be trained with the student, and the loop builds its optimizer from the
model's parameters *before* any hook runs, so the hook attaches its loss modules to the student as
the submodule ``student.torchslim_distill_adapters`` when it is built. They are then optimized,
gradient-clipped, moved to the device and checkpointed with the student, like any other layer.
:meth:`DistillationHook.close` removes them again (and the forward hooks, and restores the teacher's
mode, device and attention implementation); use the hook as a context manager, or call ``close()``
in a ``finally``, so that a failed run leaves the student as it was. Forward hooks are registered
in ``on_train_start`` and removed in ``on_train_end`` (and by ``close()``).

Checks before training. With an `example_input` the constructor runs teacher and student once
and raises a `ModelError` when their logits differ in shape, a `TargetError` when a tapped name
does not exist, and a `ModelError` when paired features cannot be compared; a temperature <= 0 or
an alpha outside [0, 1] is a `ConfigError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchslim.core.batches import call_model, logits_of, model_device
from torchslim.core.errors import ConfigError, ModelError, did_you_mean
from torchslim.distillation.losses import (
    FEATURE_LOSSES,
    _check_alpha,
    _check_temperature,
    feature_loss,
    soft_target_loss,
)
from torchslim.distillation.taps import (
    EagerAttention,
    FeatureTaps,
    attention_module,
    candidate_layers,
    find_module,
    pair_by_depth,
    pick_feature,
    token_mask,
)
from torchslim.train.hooks import TrainHook, TrainState

ADAPTERS_ATTR = "torchslim_distill_adapters"
"""Attribute under which the hook attaches its loss modules (adapters) to the student while it is open."""


@dataclasses.dataclass(frozen=True)
class FeaturePair:
    """A teacher module and a student module whose outputs are compared by the feature loss `loss`
    (a key of :data:`~torchslim.distillation.losses.FEATURE_LOSSES`) with weight `weight`."""

    teacher: str
    student: str
    loss: str = "hint"
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.loss not in FEATURE_LOSSES:
            raise ConfigError(
                f"Unknown feature loss {self.loss!r} for pair {self.teacher!r} -> {self.student!r}; known: "
                f"{sorted(FEATURE_LOSSES)}." + did_you_mean(self.loss, list(FEATURE_LOSSES))
            )
        if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)) or not self.weight >= 0:
            raise ConfigError(f"FeaturePair.weight={self.weight!r} must be a number >= 0.")

    @property
    def tap_kind(self) -> str:
        return "attention" if self.loss == "attention_map" else "hidden"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def zero_task_loss(outputs: Any, labels: Tensor) -> Tensor:
    """A ``loss_fn`` for ``train`` that adds nothing (use with ``task_loss_in_loop=False``)."""
    return logits_of(outputs).sum() * 0.0


def auto_pairs(teacher: nn.Module, student: nn.Module, *, loss: str = "hint", weight: float = 1.0) -> list[FeaturePair]:
    """Pair the student's layers with the teacher's by relative depth (see
    :mod:`torchslim.distillation.taps`). For ``loss="attention_map"`` each paired layer is replaced by
    its first attention submodule."""
    pairs = pair_by_depth(candidate_layers(teacher), candidate_layers(student))
    if loss == "attention_map":
        pairs = [(attention_module(teacher, t), attention_module(student, s)) for t, s in pairs]
    return [FeaturePair(t, s, loss, weight) for t, s in pairs]


def resolve_pairs(
    teacher: nn.Module,
    student: nn.Module,
    pairs: str | Iterable[Any] | None,
    *,
    loss: str = "hint",
    weight: float = 1.0,
) -> list[FeaturePair]:
    """Normalise `pairs`: None / ``()`` -> none; ``"auto"`` or ``"auto:LOSS"`` -> :func:`auto_pairs`;
    otherwise FeaturePairs, ``(teacher, student)`` tuples or ``"teacher:student[:loss]"`` strings
    (each may also be ``"auto[:loss]"``)."""
    if pairs is None:
        return []
    if isinstance(pairs, str):
        pairs = [pairs]
    out: list[FeaturePair] = []
    for item in pairs:
        if isinstance(item, FeaturePair):
            out.append(item)
        elif isinstance(item, str):
            parts = item.split(":")
            if parts[0] == "auto" and len(parts) <= 2:
                out.extend(auto_pairs(teacher, student, loss=parts[1] if len(parts) == 2 else loss, weight=weight))
            elif len(parts) in (2, 3) and all(parts):
                out.append(FeaturePair(parts[0], parts[1], parts[2] if len(parts) == 3 else loss, weight))
            else:
                raise ConfigError(
                    f"Feature pair {item!r} must look like 'teacher_module:student_module[:loss]' or 'auto[:loss]'."
                )
        elif isinstance(item, (tuple, list)) and len(item) in (2, 3) and all(isinstance(v, str) for v in item):
            out.append(FeaturePair(item[0], item[1], item[2] if len(item) == 3 else loss, weight))
        else:
            raise ConfigError(f"Cannot read feature pair {item!r}; use FeaturePair, (teacher, student) or 't:s'.")
    return out


class DistillationHook(TrainHook):
    """Knowledge distillation from `teacher` into `student` inside :func:`torchslim.train.train`.

    Args:
        teacher: the trained model; run in eval mode under ``no_grad``, never updated. Its
            train/eval mode and device are restored by ``close()``.
        student: the model the loop trains (the one passed to ``train``).
        temperature: T > 0 of the softened softmax.
        alpha: weight of the soft (KD) term in [0, 1]; ``1 - alpha`` weighs the hard labels.
        pairs: feature pairs (see :func:`resolve_pairs`); ``"auto"`` pairs by relative depth.
        feature_loss, feature_weight: loss and weight of pairs that do not name their own.
        example_input: one batch of inputs; checks compatibility and sizes adapters before
            training. Required when `pairs` is not empty.
        task_loss_in_loop: see the module docstring.
        seed: seeds the adapters' initialisation (the global RNG is left as it was).
    """

    def __init__(
        self,
        teacher: nn.Module,
        student: nn.Module,
        *,
        temperature: float = 4.0,
        alpha: float = 0.9,
        pairs: str | Iterable[Any] | None = None,
        feature_loss: str = "hint",
        feature_weight: float = 1.0,
        example_input: Any = None,
        task_loss_in_loop: bool = True,
        seed: int = 0,
    ) -> None:
        if not isinstance(teacher, nn.Module) or not isinstance(student, nn.Module):
            raise ModelError("DistillationHook needs a teacher and a student nn.Module.")
        if teacher is student:
            raise ModelError("The teacher and the student are the same module; distil into a copy.")
        self.teacher = teacher
        self.student = student
        self.temperature = _check_temperature(temperature)
        self.alpha = _check_alpha(alpha)
        self.task_loss_in_loop = bool(task_loss_in_loop)
        self.pairs: list[FeaturePair] = resolve_pairs(teacher, student, pairs, loss=feature_loss, weight=feature_weight)
        for pair in self.pairs:
            find_module(teacher, pair.teacher, role="teacher")
            find_module(student, pair.student, role="student")
        if self.pairs and example_input is None:
            raise ConfigError(
                "Feature distillation needs example_input=... (one input batch) to size the adapters before "
                "training starts."
            )
        self.losses = nn.ModuleDict()
        self.totals: dict[str, float] = {}
        self.steps = 0
        self._checked = False
        self._closed = False
        self._teacher_taps: FeatureTaps | None = None
        self._student_taps: FeatureTaps | None = None
        self._teacher_state: tuple[bool, torch.device] | None = None
        self._eager = EagerAttention(teacher, student) if any(p.loss == "attention_map" for p in self.pairs) else None
        try:
            if example_input is not None:
                self._probe(example_input, seed)
        except BaseException:
            self.close()
            raise

    # -- set-up -----------------------------------------------------------------------------------

    def _probe(self, example_input: Any, seed: int) -> None:
        """Run both models once: check the logits, build the feature losses, attach the adapters."""
        t_names = [p.teacher for p in self.pairs]
        s_names = [p.student for p in self.pairs]
        flags = [(m, m.training) for m in (*self.teacher.modules(), *self.student.modules())]
        try:
            self.teacher.eval()
            self.student.eval()
            with (
                FeatureTaps(self.teacher, t_names, role="teacher") as t_taps,
                FeatureTaps(self.student, s_names, role="student") as s_taps,
                torch.no_grad(),
            ):
                t_out = _run_probe(self.teacher, example_input, "teacher")
                s_out = _run_probe(self.student, example_input, "student")
                self._check_logits(logits_of(s_out), logits_of(t_out))
                shapes = [
                    (
                        tuple(
                            pick_feature(s_taps.get(p.student), kind=p.tap_kind, name=p.student, role="student").shape
                        ),
                        tuple(
                            pick_feature(t_taps.get(p.teacher), kind=p.tap_kind, name=p.teacher, role="teacher").shape
                        ),
                    )
                    for p in self.pairs
                ]
        finally:
            for m, flag in flags:
                m.training = flag
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for i, (pair, (s_shape, t_shape)) in enumerate(zip(self.pairs, shapes, strict=True)):
                try:
                    self.losses[str(i)] = feature_loss(pair.loss, s_shape, t_shape)
                except ModelError as exc:
                    raise ModelError(
                        f"Feature pair {pair.teacher!r} -> {pair.student!r} ({pair.loss}): {exc}"
                    ) from None
        self.losses.to(model_device(self.student))
        if any(True for _ in self.losses.parameters()):
            if hasattr(self.student, ADAPTERS_ATTR):
                raise ModelError(
                    f"The student already carries {ADAPTERS_ATTR!r} (another open DistillationHook); close it first."
                )
            self.student.add_module(ADAPTERS_ATTR, self.losses)

    def _check_logits(self, student: Tensor, teacher: Tensor) -> None:
        if student.shape != teacher.shape:
            raise ModelError(
                f"Teacher and student outputs are incompatible: teacher logits {tuple(teacher.shape)}, student "
                f"logits {tuple(student.shape)}. Distillation needs the same output shape (same classes)."
            )
        self._checked = True

    @property
    def adapter_parameters(self) -> int:
        """Number of parameters of the adapters (trained with the student, removed by ``close()``)."""
        return sum(p.numel() for p in self.losses.parameters())

    # -- TrainHook ----------------------------------------------------------------------------------

    def on_train_start(self, state: TrainState) -> None:
        if self._closed:
            raise ModelError("This DistillationHook was closed; build a new one for another run.")
        device = state.device
        if self._teacher_state is None:
            self._teacher_state = (self.teacher.training, model_device(self.teacher))
        if model_device(self.teacher) != device:
            self.teacher.to(device)
        self.teacher.eval()
        self.losses.to(device)
        names_t = list(dict.fromkeys(p.teacher for p in self.pairs))
        names_s = list(dict.fromkeys(p.student for p in self.pairs))
        self._teacher_taps = FeatureTaps(self.teacher, names_t, role="teacher").open()
        self._student_taps = FeatureTaps(self.student, names_s, role="student").open()

    def extra_loss(self, state: TrainState, batch: Any, outputs: Any) -> Tensor | None:
        if self.alpha == 0 and not self.pairs and self.task_loss_in_loop and self._checked:
            return None  # plain fine-tuning: nothing to add, so the teacher need not run
        inputs, labels = batch
        s_logits = logits_of(outputs)
        was_training = self.teacher.training
        self.teacher.eval()
        try:
            with torch.no_grad():
                t_logits = logits_of(call_model(self.teacher, inputs))
        finally:
            self.teacher.train(was_training)
        if not self._checked:
            self._check_logits(s_logits, t_logits)
        total = s_logits.new_zeros(())
        terms: dict[str, float] = {}
        if self.alpha > 0:
            soft = soft_target_loss(s_logits, t_logits, temperature=self.temperature)
            total = total + self.alpha * soft
            terms["kd"] = float(soft.detach())
        if self.task_loss_in_loop:
            if self.alpha > 0:
                total = total - self.alpha * _hard_loss(s_logits, labels)
        elif self.alpha < 1:
            hard = _hard_loss(s_logits, labels)
            total = total + (1.0 - self.alpha) * hard
            terms["ce"] = float(hard.detach())
        if self.pairs:
            assert self._teacher_taps is not None and self._student_taps is not None
            mask = None
            for i, pair in enumerate(self.pairs):
                s = pick_feature(
                    self._student_taps.get(pair.student), kind=pair.tap_kind, name=pair.student, role="student"
                )
                t = pick_feature(
                    self._teacher_taps.get(pair.teacher), kind=pair.tap_kind, name=pair.teacher, role="teacher"
                )
                if mask is None and s.dim() >= 3:
                    mask = token_mask(self.student, inputs)
                value = self.losses[str(i)](s, t.detach(), mask)
                total = total + pair.weight * value
                key = f"{pair.loss}:{pair.student}"
                terms[key] = terms.get(key, 0.0) + float(value.detach())
            self._teacher_taps.clear()
            self._student_taps.clear()
        self.steps += 1
        for key, value in terms.items():
            self.totals[key] = self.totals.get(key, 0.0) + value
        return total

    def on_train_end(self, state: TrainState) -> None:
        self._remove_taps()
        self._restore_teacher()

    def state_dict(self) -> dict[str, Any]:
        """The running sums of the loss terms (the adapters are checkpointed with the student)."""
        return {"steps": self.steps, "totals": dict(self.totals)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state.get("steps", 0))
        self.totals = {str(k): float(v) for k, v in (state.get("totals") or {}).items()}

    # -- clean-up -----------------------------------------------------------------------------------

    def _remove_taps(self) -> None:
        for taps in (self._teacher_taps, self._student_taps):
            if taps is not None:
                taps.close()
        self._teacher_taps = self._student_taps = None

    def _restore_teacher(self) -> None:
        if self._teacher_state is not None:
            training, device = self._teacher_state
            if model_device(self.teacher) != device:
                self.teacher.to(device)
            self.teacher.train(training)
            self._teacher_state = None

    def close(self) -> None:
        """Remove forward hooks and adapters from the student, restore the teacher. Idempotent."""
        self._remove_taps()
        self._restore_teacher()
        if getattr(self.student, ADAPTERS_ATTR, None) is self.losses:
            delattr(self.student, ADAPTERS_ATTR)
        if self._eager is not None:
            self._eager.close()
            self._eager = None
        self._closed = True

    def __enter__(self) -> DistillationHook:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def has_open_taps(self) -> bool:
        """Whether forward hooks are currently registered on teacher or student."""
        return any(t is not None and t.active for t in (self._teacher_taps, self._student_taps))

    def mean_terms(self) -> dict[str, float]:
        """Mean value of each loss term over the steps taken so far (``kd``: ``T^2 KL``)."""
        return {k: v / self.steps for k, v in self.totals.items()} if self.steps else {}


def _run_probe(model: nn.Module, example_input: Any, role: str) -> Any:
    try:
        return call_model(model, _to(example_input, model_device(model)))
    except (RuntimeError, TypeError, IndexError) as exc:
        raise ModelError(
            f"The {role} {type(model).__name__} cannot run on the training inputs: {type(exc).__name__}: {exc}"
        ) from exc


def _hard_loss(logits: Tensor, labels: Tensor) -> Tensor:
    return F.cross_entropy(logits, labels)


def _to(value: Any, device: torch.device) -> Any:
    from torchslim.core.batches import to_device

    return to_device(value, device)


def describe_pairs(pairs: Sequence[FeaturePair]) -> list[dict[str, Any]]:
    return [p.to_dict() for p in pairs]
