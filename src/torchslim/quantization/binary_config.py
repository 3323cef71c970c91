"""Configs of the ``binarize`` and ``ternarize`` techniques (:mod:`~torchslim.quantization.binary_technique`).

YAML::

    - technique: binarize
      config: {train: {epochs: 2, lr: 0.001}}          # first and last layers keep 8 bits
    - technique: ternarize
      config: {trained_scales: true}                   # TTQ; false (default) is TWN
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

from torchslim.core.config import TechniqueConfig
from torchslim.core.errors import ConfigError
from torchslim.quantization.binary import TWN_THRESHOLD
from torchslim.quantization.functional import Granularity
from torchslim.train.config import TrainConfig

BINARY_TRAIN_DEFAULTS: dict[str, Any] = {"epochs": 1, "lr": 1e-3, "schedule": "cosine"}
"""Straight-through fine-tuning from a trained model: one epoch keeps fmnist-cnn within 1 point of fp32
with binary and ternary weights (benchmarks/results/nonuniform_binary.md)."""


def _binary_train() -> TrainConfig:
    return TrainConfig(**BINARY_TRAIN_DEFAULTS)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BinaryWeightsConfig(TechniqueConfig):
    """Fields shared by ``binarize`` and ``ternarize`` (not a technique itself).

    Attributes:
        granularity: one scale per output channel (``per_channel``, XNOR-Net) or per layer (``per_tensor``).
        clip: the straight-through gradient passes where ``|w| <= clip`` and the latent weights are
            clipped to ``[-clip, clip]`` after each step (BinaryConnect / BNN; None: neither).
        keep_first / keep_last: the model's first layer and its head keep `edge_bits`-bit uniform
            weights (per channel; BNN and XNOR-Net keep them real-valued: they are small and the
            most sensitive). False binarizes them as well.
        edge_bits: bit-width of the kept first and last layers (2-8).
        activations: ``float`` (the default) or ``binary``: the inputs of the binarized / ternarized
            layers become ``beta * sign(x - tau)`` per channel (learned threshold and scale, Bi-Real's
            ApproxSign gradient; :mod:`~torchslim.quantization.binary_activation`), initialised
            from `report_samples` calibration (else training) inputs.
        train: the straight-through fine-tuning (``epochs: 0`` converts without training).
        report_samples: calibration samples for the report's output agreement and for the binary
            activations' initial thresholds (0: none).
    """

    granularity: Literal["per_channel", "per_tensor"] = "per_channel"
    clip: float | None = 1.0
    keep_first: bool = True
    keep_last: bool = True
    edge_bits: int = 8
    activations: Literal["float", "binary"] = "float"
    train: TrainConfig = dataclasses.field(default_factory=_binary_train)
    report_samples: int = 256

    def validate(self) -> None:
        if self.clip is not None:
            self.check("clip", self.clip, low=0, low_inclusive=False)
        self.check("edge_bits", self.edge_bits, low=2, high=8)
        self.check("report_samples", self.report_samples, low=0)
        if self.activations == "binary" and self.report_samples == 0:
            raise ConfigError(
                f"{type(self).__name__}.activations='binary' needs report_samples >= 1: the thresholds start "
                "from the layers' inputs on that many samples."
            )

    def weight_granularity(self) -> Granularity:
        return Granularity.per_channel(0) if self.granularity == "per_channel" else Granularity.per_tensor()


@dataclasses.dataclass(frozen=True, kw_only=True)
class Binarize(BinaryWeightsConfig):
    """1-bit weights ``{-a, +a}``: ``w_hat = a sign(w)`` with ``a = mean(|w|)`` per output channel
    (XNOR-Net, Rastegari et al. 2016, eq. 4), trained with the clipped straight-through estimator
    ``dL/dw = dL/dw_hat 1{|w| <= 1}`` (BinaryConnect / BNN, Courbariaux et al. 2015, Hubara et al. 2016).
    Stored 8 codes per byte. See :mod:`~torchslim.quantization.binary` for the formulas."""

    name: ClassVar[str] = "binarize"
    summary: ClassVar[str] = (
        "Binary weights {-a, +a} (BinaryConnect/BNN sign + clipped STE, XNOR-Net per-channel a = mean|W|), "
        "first and last layers 8-bit; 1 bit per weight on disk."
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class Ternarize(BinaryWeightsConfig):
    """2-bit ternary weights ``{-a, 0, +a}``: TWN (Li, Zhang & Liu 2016): ``delta = 0.7 mean(|w|)``,
    ``a`` = the mean of ``|w|`` above it; or, with `trained_scales`, ``{-a_n, 0, +a_p}`` with both
    scales trained (TTQ, Zhu et al. 2017). Stored 4 codes per byte.

    Attributes:
        threshold: ``delta = threshold * mean(|w|)`` per row (TWN: 0.7).
        trained_scales: TTQ's trained positive and negative scales instead of TWN's closed form.
    """

    name: ClassVar[str] = "ternarize"
    summary: ClassVar[str] = (
        "Ternary weights {-a, 0, +a} (TWN threshold 0.7 mean|W|) or {-a_n, 0, +a_p} with trained scales (TTQ), "
        "STE training, first and last layers 8-bit; 2 bits per weight on disk."
    )

    threshold: float = TWN_THRESHOLD
    trained_scales: bool = False

    def validate(self) -> None:
        super().validate()
        self.check("threshold", self.threshold, low=0, high=10, high_inclusive=False)


__all__ = ["BINARY_TRAIN_DEFAULTS", "Binarize", "BinaryWeightsConfig", "Ternarize"]
