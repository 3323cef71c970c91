"""`LotteryConfig`: the settings of an iterative-magnitude-pruning lottery experiment."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

from torchslim.core.config import TechniqueConfig
from torchslim.core.errors import ConfigError
from torchslim.lottery.rewind import RewindPoint
from torchslim.train.config import TrainConfig

NAME = "lottery"
Control = Literal["reinit", "random"]
CONTROLS: tuple[Control, ...] = ("reinit", "random")


def level_training() -> TrainConfig:
    """The default training of every level: one Adam epoch at lr 1.2e-3 (Frankle & Carbin's LeNet rate)."""
    return TrainConfig(epochs=1, lr=1.2e-3)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LotteryConfig(TechniqueConfig):
    """Lottery tickets by iterative magnitude pruning (IMP) with rewinding, and its random controls.

    Formula: level 0 trains the dense network from ``θ_0`` to ``θ_T`` (and keeps ``θ_k``, the weights
    after ``k`` steps). Level ``L >= 1`` removes the fraction ``p`` of the *remaining* weights of
    smallest ``|θ_T|`` (per layer or globally; the output layer at ``p/2``), so a layer keeps
    ``(1 - p)^L`` of its weights; it rewinds the survivors to ``θ_k`` (``k = 0``: the
    initialisation) and trains ``m ⊙ θ`` again for ``T - k`` steps. Controls at each level train
    with the same budget: ``reinit`` (the ticket's mask on a fresh random initialisation) and
    ``random`` (a random mask with the ticket's per-layer sparsity on ``θ_k``).

    Citations: Frankle & Carbin 2019, "The lottery ticket hypothesis: finding sparse, trainable
    neural networks" (ICLR); Frankle, Dziugaite, Roy & Carbin 2020, "Linear mode connectivity and
    the lottery ticket hypothesis" (ICML; rewinding to step k).

    Attributes:
        levels: pruning levels after the dense run (level L keeps about ``(1 - rate)^L``).
        rate: fraction p of the remaining weights removed per level, in (0, 1).
        output_rate: the output layer's rate; None means ``rate / 2`` (as in the paper).
        output_layer: name of the output layer; None means the last prunable layer in module order.
        scope: ``layer`` (each layer loses p of its own weights; the paper's LeNet setting) or
            ``global`` (one threshold over all layers but the output layer; its VGG/ResNet setting).
        rewind: ``"0"`` (initialisation), ``"<k>it"`` (after k steps) or ``"<e>ep"`` (after e epochs).
        controls: the control branches trained at every level: ``reinit`` and/or ``random``.
        init: ``model`` (the given weights are ``θ_0``: a fresh model's initialisation, or pretrained
            weights) or ``random`` (re-initialise the model with the run's seed first).
        train: the dense run's training (``T`` steps); each level trains ``T - k`` steps.
    """

    name: ClassVar[str] = NAME
    summary: ClassVar[str] = "Lottery tickets: iterative magnitude pruning with rewinding, random controls."

    levels: int = 5
    rate: float = 0.2
    output_rate: float | None = None
    output_layer: str | None = None
    scope: Literal["layer", "global"] = "layer"
    rewind: str = "0"
    controls: tuple[Control, ...] = CONTROLS
    init: Literal["model", "random"] = "model"
    train: TrainConfig = dataclasses.field(default_factory=level_training)

    def validate(self) -> None:
        self.check("levels", self.levels, low=1)
        self.check("rate", self.rate, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
        if self.output_rate is not None:
            self.check("output_rate", self.output_rate, low=0.0, high=1.0, high_inclusive=False)
        RewindPoint.parse(self.rewind)
        if len(set(self.controls)) != len(self.controls):
            raise ConfigError(f"LotteryConfig.controls={list(self.controls)} names a control twice.")
        if self.train.epochs == 0 or self.train.max_steps == 0:
            raise ConfigError("LotteryConfig.train trains nothing (epochs=0); a lottery level must train.")

    @property
    def rewind_point(self) -> RewindPoint:
        return RewindPoint.parse(self.rewind)

    @property
    def effective_output_rate(self) -> float:
        return self.rate / 2 if self.output_rate is None else self.output_rate
