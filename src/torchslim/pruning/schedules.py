"""Pruning schedules: one-shot, iterative (prune, fine-tune, repeat) and gradual (AGP).

* **Iterative** (Han et al. 2015; Frankle & Carbin 2019): round ``k`` of ``n`` prunes to
  ``s_k = 1 - (1 - s_f)^(k/n)``, i.e. each round removes the same fraction of the weights still
  alive, ending exactly at ``s_f``; the model is fine-tuned after each round.
* **AGP**, automated gradual pruning (Zhu & Gupta 2017, "To prune, or not to prune: exploring the
  efficacy of pruning for model compression"): during training, at steps
  ``t = t0, t0 + Δt, ..., t0 + nΔt`` the sparsity is raised to

      s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n Δt))^3

  which prunes fast early, while redundant weights abound, and slowly near the end. It runs
  inside the one training loop as :class:`AGPHook`.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from torchslim.core.errors import ConfigError
from torchslim.train.hooks import TrainHook, TrainState


def iterative_sparsities(final: float, steps: int) -> list[float]:
    """Target sparsity after each of `steps` rounds: ``1 - (1 - final)^(k/steps)``, k = 1..steps."""
    if steps < 1:
        raise ConfigError(f"steps={steps!r} must be at least 1.")
    if not 0.0 <= final < 1.0:
        raise ConfigError(f"sparsity={final!r} is out of range [0, 1).")
    out = [1.0 - (1.0 - final) ** (k / steps) for k in range(1, steps + 1)]
    out[-1] = final
    return out


def agp_sparsity(
    step: int,
    *,
    initial: float,
    final: float,
    start_step: int,
    end_step: int,
    frequency: int = 1,
) -> float:
    """Zhu & Gupta's cubic schedule at training step `step` (0-based count of finished steps).

    The sparsity changes only at ``t0 + kΔt`` (``Δt = frequency``); before `start_step` it is
    `initial`, from `end_step` on it is `final`. ``n Δt = end_step - start_step``.
    """
    if end_step <= start_step:
        raise ConfigError(f"end_step={end_step} must be greater than start_step={start_step}.")
    if frequency < 1:
        raise ConfigError(f"frequency={frequency} must be at least 1.")
    if step < start_step:
        return initial
    if step >= end_step:
        return final
    t = start_step + ((step - start_step) // frequency) * frequency
    progress = (t - start_step) / (end_step - start_step)
    return final + (initial - final) * (1.0 - progress) ** 3


def agp_points(*, start_step: int, end_step: int, frequency: int) -> list[int]:
    """The steps at which AGP changes the sparsity: ``t0, t0 + Δt, ...`` and `end_step`."""
    points = list(range(start_step, end_step, frequency))
    if not points or points[-1] != end_step:
        points.append(end_step)
    return points


class SupportsPruneTo(Protocol):
    def prune_to(self, sparsity: float) -> Any: ...


class AGPHook(TrainHook):
    """Training hook that raises sparsity along the AGP schedule through ``pruner.prune_to``.

    `pruner` is anything with ``prune_to(sparsity)`` (a :class:`~torchslim.pruning.MagnitudePruner`).
    `end_step` None means 75% of the run's total steps (the rest lets the network recover at the
    final sparsity, as Zhu & Gupta do); `frequency` None means 20 pruning events over the ramp.
    At the end of training the final sparsity is enforced even if training stopped early.
    """

    def __init__(
        self,
        pruner: SupportsPruneTo,
        *,
        final: float,
        initial: float = 0.0,
        start_step: int = 0,
        end_step: int | None = None,
        frequency: int | None = None,
    ) -> None:
        if not 0.0 <= initial <= final < 1.0:
            raise ConfigError(f"AGP needs 0 <= initial ({initial}) <= final ({final}) < 1.")
        if start_step < 0:
            raise ConfigError(f"start_step={start_step} must be >= 0.")
        self.pruner = pruner
        self.final = float(final)
        self.initial = float(initial)
        self.start_step = int(start_step)
        self.end_step = end_step
        self.frequency = frequency
        self.current = 0.0
        self.history: list[tuple[int, float]] = []

    def resolve(self, total_steps: int | None) -> tuple[int, int]:
        """``(end_step, frequency)`` for a run of `total_steps` steps."""
        end = self.end_step
        if end is None:
            if total_steps is None:
                raise ConfigError(
                    "AGP needs end_step when the number of training steps is unknown (data without len())."
                )
            end = max(self.start_step + 1, int(math.floor(0.75 * total_steps)))
        if end <= self.start_step:
            raise ConfigError(f"AGP end_step={end} must be greater than start_step={self.start_step}.")
        freq = self.frequency if self.frequency is not None else max(1, (end - self.start_step) // 20)
        return int(end), int(freq)

    def target(self, step: int, total_steps: int | None) -> float:
        end, freq = self.resolve(total_steps)
        return agp_sparsity(
            step, initial=self.initial, final=self.final, start_step=self.start_step, end_step=end, frequency=freq
        )

    def _apply(self, step: int, sparsity: float) -> None:
        if sparsity > self.current + 1e-12:
            self.pruner.prune_to(sparsity)
            self.current = sparsity
            self.history.append((step, sparsity))

    def on_train_start(self, state: TrainState) -> None:
        self.resolve(state.total_steps)  # fail early on an impossible schedule
        if state.step >= self.start_step:
            self._apply(state.step, self.target(state.step, state.total_steps))

    def on_step_end(self, state: TrainState) -> None:
        self._apply(state.step, self.target(state.step, state.total_steps))

    def on_train_end(self, state: TrainState) -> None:
        self._apply(state.step, self.final)

    def state_dict(self) -> dict[str, Any]:
        return {"current": self.current, "history": [list(h) for h in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.current = float(state.get("current", 0.0))
        self.history = [(int(s), float(v)) for s, v in state.get("history", [])]
