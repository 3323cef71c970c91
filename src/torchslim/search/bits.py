"""Per-layer sensitivity to weight bit-width: quality with one layer's weights quantized at a time.

For each Linear / convolution ``l`` and bit-width ``b``, the weights of ``l`` alone are replaced by
their round-to-nearest, per-output-channel, symmetric min-max quantization at ``b`` bits
(``w_q = s * clamp(round(w / s), -2^(b-1), 2^(b-1) - 1)``, ``s = max|w_c| / (2^(b-1) - 1)`` per
channel ``c``; 1 bit: ``s * sign(w)`` with ``s = mean|w_c|``) and the model is evaluated:
``drop_l(b) = q(fp32) - q(layer l at b bits)``. This is the per-layer bit-width analogue of the
pruning sensitivity curves (Han et al. 2015, fig. 6) and the layer-wise "precision sensitivity" that
mixed-precision methods rank layers by (HAWQ, Dong et al. 2019, uses the Hessian trace; a direct
measurement is affordable for the layer counts torchslim targets). Layers whose curve stays flat can
take few bits; the automated search gives each layer the range its curve allows.

The model passed in is never changed: each layer's weights are restored after its curve.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from torchslim.core.errors import ConfigError
from torchslim.quantization.functional import Granularity, binary_scale, choose_qparams, fake_quantize, min_max

DEFAULT_BITS = (2, 3, 4, 6, 8)

Quality = Callable[[nn.Module], float]
"""A score of a model on held-out data, higher is better (accuracy, or cosine to the original)."""


@dataclasses.dataclass
class BitSensitivity:
    """Quality of the model with one layer's weights quantized at each bit-width.

    Attributes:
        bits: the x axis (ascending).
        baseline: quality of the fp32 model.
        curves: ``{layer: [quality at each bit-width]}`` for the layers measured.
        params: ``{layer: weights in that layer}`` for every Linear / convolution.
        unmeasured: layers asked for but not measured before the deadline.
    """

    bits: list[int]
    baseline: float
    curves: dict[str, list[float]]
    params: dict[str, int]
    unmeasured: list[str] = dataclasses.field(default_factory=list)

    def drops(self) -> dict[str, list[float]]:
        """``{layer: [baseline - quality at each bit-width]}``."""
        return {k: [self.baseline - q for q in v] for k, v in self.curves.items()}

    def min_bits(self, max_drop: float) -> dict[str, int]:
        """Per measured layer, the fewest analysed bits whose drop is at most `max_drop` (scanning
        down from the widest, stopping at the first that exceeds it); the widest analysed when none
        qualifies."""
        out: dict[str, int] = {}
        order = sorted(range(len(self.bits)), key=lambda i: -self.bits[i])
        for layer, values in self.curves.items():
            best = self.bits[order[0]]
            for i in order:
                if self.baseline - values[i] > max_drop + 1e-12:
                    break
                best = self.bits[i]
            out[layer] = best
        return out

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BitSensitivity:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def quantizable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The Linear and convolution layers with a floating-point weight of at least 2 dimensions."""
    out: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if not isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
            continue
        if isinstance(weight, torch.Tensor) and weight.is_floating_point() and weight.dim() >= 2:
            out.append((name, module))
    return out


def weight_counts(model: nn.Module) -> dict[str, int]:
    """``{layer: weights}`` of every Linear / convolution of `model` (:func:`quantizable_layers`)."""
    counts = {}
    for name, module in quantizable_layers(model):
        weight = module.weight
        assert isinstance(weight, torch.Tensor)
        counts[name] = weight.numel()
    return counts


def rtn_weight(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Round-to-nearest per-output-channel symmetric quantization of `weight` at `bits` (dequantized)."""
    granularity = Granularity.per_channel(0)
    if bits == 1:
        scale = binary_scale(weight, granularity)
        return fake_quantize(weight, scale, 0, bits=1, granularity=granularity)
    lo, hi = min_max(weight, granularity)
    scale, zero_point = choose_qparams(lo, hi, bits=bits, symmetric=True)
    return fake_quantize(weight, scale, zero_point, bits=bits, granularity=granularity)


def bit_sensitivity(
    model: nn.Module,
    quality: Quality,
    *,
    bits: Sequence[int] = DEFAULT_BITS,
    layers: Sequence[str] | None = None,
    deadline: float | None = None,
) -> BitSensitivity:
    """Quality (by `quality`) with each layer's weights alone quantized at each of `bits`.

    `layers` limits the analysis to those names (default: every Linear / convolution); they are
    measured largest first. At `deadline` (a ``time.monotonic()`` value) the analysis stops after
    the layer it is on: the layers not reached have no curve (``unmeasured``), and a search offers
    them every bit-width instead of a range the curves settled. ``params`` covers every layer.
    """
    values = sorted({int(b) for b in bits})
    if not values or any(not 1 <= b <= 8 for b in values):
        raise ConfigError(f"bit_sensitivity: bits={list(bits)!r} must be integers in [1, 8].")
    work = copy.deepcopy(model).eval()
    available = dict(quantizable_layers(work))
    names = list(available) if layers is None else list(layers)
    for name in names:
        if name not in available:
            raise ConfigError(f"bit_sensitivity: layer {name!r} is not a Linear/convolution layer of the model.")
    params = weight_counts(work)
    names.sort(key=lambda name: -params[name])
    baseline = float(quality(work))
    curves: dict[str, list[float]] = {}
    unmeasured: list[str] = []
    for name in names:
        if deadline is not None and time.monotonic() >= deadline:
            unmeasured.append(name)
            continue
        weight = available[name].weight
        assert isinstance(weight, torch.Tensor)
        original = weight.detach().clone()
        scores = []
        try:
            for b in values:
                with torch.no_grad():
                    weight.copy_(rtn_weight(original, b))
                scores.append(float(quality(work)))
        finally:
            with torch.no_grad():
                weight.copy_(original)
        curves[name] = scores
    return BitSensitivity(bits=values, baseline=baseline, curves=curves, params=params, unmeasured=unmeasured)
