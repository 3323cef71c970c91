"""Adaptive distillation settings: choose temperature and alpha of a ``distill`` step by a short probe.

Why. No single (T, alpha) is right everywhere. Hinton et al. (2015), "Distilling the Knowledge in a
Neural Network", used high temperatures with a long schedule and a strong teacher; with a weak
teacher or a short recovery budget the soft targets slow the student down. Measured here (issue 20):
a ``fmnist-resnet`` teacher trained 1 epoch on 5,000 images, 70% of its channels removed, 1 epoch of
recovery: T = 4, alpha = 0.9 ended 10-20 points below plain fine-tuning, while T = 2, alpha = 0.5
with a 10-epoch teacher was ahead of it (benchmarks/results/distillation.md).

What. When a ``distill`` step leaves ``temperature`` and/or ``alpha`` unset, every candidate
setting (:func:`candidates_for`; plain fine-tuning, alpha = 0, is one of them when alpha is unset)
is trained from the same start, with the same seed and data order, for a short run of ``k``
optimizer steps (its own full learning-rate schedule over ``k`` steps), and scored by top-1
accuracy on the *validation* split (never the test split). The probe's cost is bounded: all
candidates together take at most ``probe_fraction`` (default 20%) of the step's budget in
optimizer steps; each needs at least :data:`MIN_PROBE_STEPS`, so a small budget probes fewer
candidates (in the order of :data:`KD_SETTINGS`), and a budget too small for two leaves the
probe out (:class:`SettingsChoice` says why).

Choice. A KD setting replaces plain fine-tuning only when its validation accuracy beats plain's
by more than two standard errors of plain's accuracy, ``2 sqrt(p (1 - p) / n)`` (at least
``2/n``) for ``n`` validation samples: a short probe is noisy (the best of up to six KD settings
also wins by chance more often than one), and by the measurements above KD that is not clearly
ahead early tends to fall behind on a short budget. Nor is a lead trusted while plain fine-tuning is
still below :data:`MATURITY` of the teacher's validation accuracy at the end of the probe: that
early, the probe measures learning speed. Without plain among the candidates (the user set alpha >
0), the best score wins. Without a probe, plain fine-tuning is
used (or, when the user set alpha > 0, the first listed temperature).

Measured (benchmarks/results/distill_defaults.md). A probe of 10% of the budget per candidate
measures early learning speed, and an early lead can reverse: with a 10-epoch teacher and 5 epochs
of recovery, T = 2, alpha = 0.5 led plain fine-tuning by 4.2 points after 20 steps (its lead still
growing: 27.4% vs 23.2% with plain at 28% of the teacher's accuracy) and ended 1.9 points below it
after 200; the :data:`MATURITY` check keeps plain fine-tuning there.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Sized
from typing import Any

from torch import nn

from torchslim.measure.accuracy import evaluate
from torchslim.train.config import TrainConfig
from torchslim.train.optim import planned_steps

MARGIN_STANDARD_ERRORS = 2.0
"""How many standard errors of plain fine-tuning's validation accuracy a KD setting must win by."""

MATURITY = 0.5
"""A KD lead is trusted only when plain fine-tuning reached at least this share of the teacher's
validation accuracy by the end of the probe. Earlier, the probe measures learning speed, where soft
targets help first, not the fit the budget ends with. Measured (benchmarks/results/distill_defaults.md):
with a 10-epoch teacher (82.8%) and 5 epochs of recovery, T = 2, alpha = 0.5 led plain fine-tuning
27.4% to 23.2% after the probe's 20 steps (its lead still growing) and ended 1.9 points below it."""

MIN_PROBE_STEPS = 16
"""Fewest optimizer steps a probed candidate trains for. Measured (benchmarks/distill_defaults.py,
first pilot): after 4-5 Adam steps at lr 1e-3 every candidate of a 70%-pruned ``fmnist-resnet`` was
still at chance (9-12% validation accuracy), so such a probe could not tell settings apart."""

KD_SETTINGS: tuple[tuple[float, float], ...] = ((2.0, 0.5), (1.0, 0.5), (4.0, 0.5), (4.0, 0.9), (2.0, 0.9), (1.0, 0.9))
"""(temperature, alpha) pairs probed, most promising first by the measurements in the module docstring."""

PLAIN_TEMPERATURE = 1.0
"""Temperature recorded for plain fine-tuning (alpha = 0: the soft targets are not used)."""


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One setting of the probe: alpha = 0 is plain fine-tuning on the labels (features, if any, stay)."""

    temperature: float
    alpha: float

    @property
    def is_plain(self) -> bool:
        return self.alpha == 0.0

    @property
    def label(self) -> str:
        return "plain fine-tuning (alpha=0)" if self.is_plain else f"T={self.temperature:g}, alpha={self.alpha:g}"


@dataclasses.dataclass(frozen=True)
class ProbeScore:
    """A candidate's validation accuracy and mean loss after its short run."""

    candidate: Candidate
    accuracy: float
    loss: float

    def to_dict(self) -> dict[str, Any]:
        return {"setting": self.candidate.label, **dataclasses.asdict(self.candidate), "accuracy": self.accuracy}


@dataclasses.dataclass(frozen=True)
class SettingsChoice:
    """The temperature and alpha a step uses, where they came from and why.

    `source`: ``"user"`` (both set), ``"probe"`` (chosen by the probe) or ``"default"`` (no probe
    was possible; `reason` says why). `scores` are the probe's, in candidate order."""

    temperature: float
    alpha: float
    source: str
    reason: str
    scores: tuple[ProbeScore, ...] = ()
    steps_each: int = 0
    budget_steps: int | None = None
    probe_fraction: float = 0.0
    validation_samples: int = 0
    seconds: float = 0.0

    @property
    def candidate(self) -> Candidate:
        return Candidate(self.temperature, self.alpha)

    @property
    def probe_steps(self) -> int:
        """Optimizer steps the probe trained, over all candidates (at most fraction x budget)."""
        return self.steps_each * len(self.scores)

    def info(self) -> dict[str, Any]:
        """What a step's report shows about the settings."""
        out: dict[str, Any] = {
            "chosen": self.candidate.label,
            "temperature": self.temperature,
            "alpha": self.alpha,
            "source": self.source,
            "reason": self.reason,
        }
        if self.scores:
            out["probe"] = {
                "scores": [s.to_dict() for s in self.scores],
                "steps_each": self.steps_each,
                "steps_total": self.probe_steps,
                "budget_steps": self.budget_steps,
                "fraction_allowed": self.probe_fraction,
                "fraction_used": self.probe_steps / self.budget_steps if self.budget_steps else None,
                "validation_samples": self.validation_samples,
                "seconds": self.seconds,
            }
        return out


def candidates_for(temperature: float | None, alpha: float | None) -> list[Candidate]:
    """The settings to probe given what the user set (None: choose); plain fine-tuning first."""
    out: list[Candidate] = []
    if alpha is None:
        out.append(Candidate(temperature if temperature is not None else PLAIN_TEMPERATURE, 0.0))
    for t, a in KD_SETTINGS:
        cand = Candidate(temperature if temperature is not None else t, alpha if alpha is not None else a)
        if cand not in out and not (cand.is_plain and any(c.is_plain for c in out)):
            out.append(cand)
    return out


def budget_steps(config: TrainConfig, loader: Iterable[Any]) -> int | None:
    """Optimizer steps the step's training plans (None when the data has no len() and no max_steps)."""
    per_epoch = len(loader) if isinstance(loader, Sized) else None
    return planned_steps(config, per_epoch)


def required_gain(accuracy: float, samples: int) -> float:
    """How far a KD setting must beat plain fine-tuning: two standard errors of plain's accuracy."""
    return MARGIN_STANDARD_ERRORS * max(math.sqrt(accuracy * (1.0 - accuracy) / samples), 1.0 / samples)


def _fixed(candidates: list[Candidate], source: str, reason: str) -> SettingsChoice:
    first = candidates[0]
    return SettingsChoice(temperature=first.temperature, alpha=first.alpha, source=source, reason=reason)


def _pick(
    scores: list[ProbeScore], samples: int, teacher_score: Callable[[], float] | None = None
) -> tuple[ProbeScore, str]:
    """The winning score and the sentence that says why (see the module docstring); `teacher_score`
    (the teacher's validation accuracy) is called only when a KD setting leads by the margin."""
    kd = [s for s in scores if not s.candidate.is_plain]
    best = max(kd, key=lambda s: s.accuracy) if kd else scores[0]
    plain = next((s for s in scores if s.candidate.is_plain), None)
    if plain is None:
        return best, f"best validation accuracy of the probe ({best.accuracy:.2%})"
    gain = required_gain(plain.accuracy, samples)
    if best is not plain and best.accuracy > plain.accuracy + gain:
        teacher_accuracy = teacher_score() if teacher_score is not None else None
        if teacher_accuracy is not None and plain.accuracy < MATURITY * teacher_accuracy:
            return plain, (
                f"{best.candidate.label} led plain fine-tuning {best.accuracy:.2%} to {plain.accuracy:.2%} "
                f"in the probe, but the probe ended early in learning (plain at {plain.accuracy:.2%}, "
                f"under {MATURITY:.0%} of the teacher's {teacher_accuracy:.2%}): such a lead measures "
                "learning speed and can reverse, so plain fine-tuning is kept"
            )
        return best, (
            f"{best.candidate.label} reached {best.accuracy:.2%} validation accuracy in the probe, plain fine-tuning "
            f"{plain.accuracy:.2%}: ahead by more than two standard errors ({gain:.2%})"
        )
    return plain, (
        f"no KD setting beat plain fine-tuning ({plain.accuracy:.2%} validation accuracy in the probe) by more than "
        f"two standard errors ({gain:.2%}; best KD: {best.candidate.label} at {best.accuracy:.2%}): "
        "falling back to plain fine-tuning"
    )


def choose_settings(
    *,
    temperature: float | None,
    alpha: float | None,
    student: nn.Module,
    train_candidate: Callable[[Candidate, nn.Module, TrainConfig], Any],
    config: TrainConfig,
    loader: Iterable[Any],
    validation: Iterable[Any] | None,
    probe_fraction: float,
    test: Iterable[Any] | None = None,
    teacher: nn.Module | None = None,
) -> SettingsChoice:
    # long: the five ways to end (user set both, no validation, validation is test, no budget, probe) in a row
    """Return the settings of a step: the user's when both are set, else the probe's choice.

    `train_candidate(candidate, model, config)` trains `model` (a copy of `student`) in place with
    `candidate` under `config` (the step's training config cut to the probe's steps). `loader` is
    the training data (only its length is read here); `validation` scores the candidates; `test`
    is only compared with `validation`, so that a validation split that *is* the test split is
    never used to choose. `teacher`, when given, is scored on `validation` too, for the
    :data:`MATURITY` check. `student` is not modified.
    """
    if temperature is not None and alpha is not None:
        return SettingsChoice(temperature=temperature, alpha=alpha, source="user", reason="set in the config")
    candidates = candidates_for(temperature, alpha)
    if len(candidates) == 1:  # alpha = 0 set: the temperature does not matter
        return _fixed(candidates, "user", "alpha=0 set in the config: no soft targets, the temperature is unused")
    if probe_fraction <= 0:
        return _fixed(candidates, "default", "probe_fraction=0: no probe")
    if validation is None:
        return _fixed(candidates, "default", "no validation split to probe settings on (the test split is never used)")
    if test is not None and validation is test:
        return _fixed(candidates, "default", "the validation split is the test split: not probing on test data")
    budget = budget_steps(config, loader)
    if budget is None:
        return _fixed(candidates, "default", "the training budget is unknown (data without len() and no max_steps)")
    probe_total = int(probe_fraction * budget)
    count = min(len(candidates), probe_total // MIN_PROBE_STEPS)
    if count < 2:
        return _fixed(
            candidates,
            "default",
            f"budget of {budget} steps too small for a probe ({probe_fraction:.0%} of it is {probe_total} steps; "
            f"two candidates need {2 * MIN_PROBE_STEPS})",
        )
    steps_each = probe_total // count
    started = time.perf_counter()
    scores, samples = _run_probe(candidates[:count], student, train_candidate, config, validation, steps_each)
    teacher_score = None if teacher is None else (lambda: float(evaluate(teacher, validation).accuracy))
    winner, reason = _pick(scores, samples, teacher_score)
    return SettingsChoice(
        temperature=winner.candidate.temperature,
        alpha=winner.candidate.alpha,
        source="probe",
        reason=reason,
        scores=tuple(scores),
        steps_each=steps_each,
        budget_steps=budget,
        probe_fraction=probe_fraction,
        validation_samples=samples,
        seconds=time.perf_counter() - started,
    )


def _run_probe(
    candidates: list[Candidate],
    student: nn.Module,
    train_candidate: Callable[[Candidate, nn.Module, TrainConfig], Any],
    config: TrainConfig,
    validation: Iterable[Any],
    steps_each: int,
) -> tuple[list[ProbeScore], int]:
    """Train a copy of `student` per candidate for `steps_each` steps; score each on `validation`."""
    short = config.replace(max_steps=steps_each, early_stop_patience=None)
    assert isinstance(short, TrainConfig)
    scores: list[ProbeScore] = []
    samples = 0
    for candidate in candidates:
        model = copy.deepcopy(student)
        train_candidate(candidate, model, short)
        stats = evaluate(model, validation)
        samples = stats.samples
        scores.append(ProbeScore(candidate=candidate, accuracy=stats.accuracy, loss=stats.loss))
        del model
    return scores, samples


__all__ = [
    "Candidate",
    "KD_SETTINGS",
    "MATURITY",
    "MIN_PROBE_STEPS",
    "ProbeScore",
    "SettingsChoice",
    "budget_steps",
    "candidates_for",
    "choose_settings",
    "required_gain",
]
