"""Where the survivors are rewound to: a training time (``0``, ``500it``, ``1ep``) and the hook that keeps it.

Frankle & Carbin 2019 rewind the surviving weights to their initial values ``θ_0``; for deeper
networks Frankle, Dziugaite, Roy & Carbin 2020 ("Linear mode connectivity and the lottery ticket
hypothesis") rewind to ``θ_k``, the weights after ``k`` steps of the dense training run ("late
rewinding"). :class:`RewindPoint` is that ``k`` as a typed value (open_lth's ``Step.from_str``);
:class:`RewindCapture` is the training hook that copies ``θ_k`` during the dense run. Its copy is
part of the hook's checkpoint state, so a dense run killed after step ``k`` still has it when it
resumes.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Literal

import torch
from torch import nn

from torchslim.core.errors import ConfigError
from torchslim.train.hooks import TrainHook, TrainState

Unit = Literal["it", "ep"]
_PATTERN = re.compile(r"\s*(\d+)\s*(it|ep)?\s*")


@dataclasses.dataclass(frozen=True)
class RewindPoint:
    """A training time: `amount` optimizer steps (``it``) or epochs (``ep``); ``0`` is the initialisation."""

    amount: int
    unit: Unit = "it"

    @classmethod
    def parse(cls, text: str, *, field: str = "LotteryConfig.rewind") -> RewindPoint:
        """``"0"`` -> init, ``"500it"`` -> 500 steps, ``"1ep"`` -> one epoch; ConfigError naming `field` otherwise."""
        match = _PATTERN.fullmatch(str(text))
        if not match:
            raise ConfigError(f"{field}={text!r} must be '0', a step count like '500it' or epochs like '1ep'.")
        amount, unit = int(match.group(1)), match.group(2)
        if unit is None and amount != 0:
            raise ConfigError(f"{field}={text!r} needs a unit: '{amount}it' (steps) or '{amount}ep' (epochs).")
        return cls(amount, "ep" if unit == "ep" else "it")

    def steps(self, steps_per_epoch: int | None) -> int:
        """This time in optimizer steps; epochs need the number of batches per epoch."""
        if self.unit == "it":
            return self.amount
        if steps_per_epoch is None:
            raise ConfigError(
                f"LotteryConfig.rewind={str(self)!r} counts epochs, but the training data has no len(); "
                "give the rewind point in steps ('500it')."
            )
        return self.amount * steps_per_epoch

    def __str__(self) -> str:
        return "0" if self.amount == 0 else f"{self.amount}{self.unit}"


def plain_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the model's state dict (a model without masks: plain keys)."""
    return {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}


class RewindCapture(TrainHook):
    """Copies the model's state after `step` optimizer steps (``step == 0``: before the first one).

    The copy is checkpointed with the hook (tensors in the checkpoint's safetensors), so a resumed
    dense run that is already past `step` keeps the copy it took before being killed.
    """

    def __init__(self, step: int) -> None:
        self.step = int(step)
        self.captured: dict[str, torch.Tensor] | None = None

    def on_train_start(self, state: TrainState) -> None:
        if self.step == 0 and state.resumed_from_step is None:
            self.captured = plain_state(state.model)

    def on_step_end(self, state: TrainState) -> None:
        if state.step == self.step:
            self.captured = plain_state(state.model)

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "captured": self.captured}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        captured = state.get("captured")
        self.captured = dict(captured) if isinstance(captured, dict) else None
