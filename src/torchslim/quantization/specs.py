"""What a quantized layer stores and computes with: :class:`WeightSpec` and :class:`ActivationSpec`.

Both are plain frozen values that round-trip through the JSON of a plan entry (see
:meth:`torchslim.core.layer.CompressedLayer.layout`), so an artifact rebuilds the same layer.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, cast

from torchslim.core.errors import ModelError
from torchslim.quantization.functional import Granularity, check_bits
from torchslim.quantization.levels import LEVELS, Levels

ActivationMode = Literal["static", "dynamic"]
ActivationGranularity = Literal["per_tensor", "per_token"]


@dataclasses.dataclass(frozen=True)
class WeightSpec:
    """How a weight is stored: its levels (``uniform`` today), bit-width, symmetry and granularity."""

    bits: int = 8
    symmetric: bool = True
    granularity: Granularity = dataclasses.field(default_factory=lambda: Granularity.per_channel(0))
    levels: str = "uniform"

    def __post_init__(self) -> None:
        object.__setattr__(self, "bits", check_bits(self.bits, name="weight bits"))
        LEVELS.entry(self.levels)  # an unknown level type fails here, with a "did you mean"

    def make_levels(self) -> Levels:
        """The :class:`~torchslim.quantization.levels.Levels` value of this spec."""
        return LEVELS.entry(self.levels).handler(bits=self.bits, symmetric=self.symmetric)

    def to_dict(self) -> dict[str, Any]:
        return {
            "bits": self.bits,
            "symmetric": self.symmetric,
            "granularity": self.granularity.to_dict(),
            "levels": self.levels,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WeightSpec:
        return cls(
            int(data["bits"]),
            bool(data["symmetric"]),
            Granularity.from_dict(data["granularity"]),
            str(data.get("levels", "uniform")),
        )


@dataclasses.dataclass(frozen=True)
class ActivationSpec:
    """How a layer's input is quantized: ``static`` (calibrated, per tensor) or ``dynamic`` (8-bit, per
    tensor or per token, range of each input at run time, ONNX ``DynamicQuantizeLinear``)."""

    mode: ActivationMode = "static"
    bits: int = 8
    symmetric: bool = False
    granularity: ActivationGranularity = "per_tensor"

    def __post_init__(self) -> None:
        object.__setattr__(self, "bits", check_bits(self.bits, name="activation bits"))
        if self.mode not in ("static", "dynamic"):
            raise ModelError(f"activation mode must be 'static' or 'dynamic', got {self.mode!r}.")
        if self.granularity not in ("per_tensor", "per_token"):
            raise ModelError(f"activation granularity must be 'per_tensor' or 'per_token', got {self.granularity!r}.")
        if self.mode == "dynamic" and (self.bits != 8 or self.symmetric):
            raise ModelError("dynamic activation quantization is 8-bit asymmetric (ONNX DynamicQuantizeLinear).")
        if self.mode == "static" and self.granularity != "per_tensor":
            raise ModelError("static activation quantization is per tensor; per_token needs mode='dynamic'.")

    @property
    def static(self) -> bool:
        return self.mode == "static"

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "bits": self.bits, "symmetric": self.symmetric, "granularity": self.granularity}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ActivationSpec | None:
        if not data:
            return None
        return cls(
            cast(ActivationMode, str(data["mode"])),
            int(data["bits"]),
            bool(data["symmetric"]),
            cast(ActivationGranularity, str(data.get("granularity", "per_tensor"))),
        )


OWN_KEYS = (
    "weight_q",
    "weight_scale",
    "weight_zero_point",
    "bias_float",
    "input_scale",
    "input_zero_point",
    "input_split",
    "_split_mult_main",
    "_split_mult_extra",
    "output_scale",
    "output_zero_point",
)
"""Buffers and parameters a quantized layer adds to its float class."""


__all__ = ["OWN_KEYS", "ActivationSpec", "WeightSpec"]
