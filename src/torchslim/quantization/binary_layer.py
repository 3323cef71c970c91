"""Binary and ternary layers: the training-time weight quantizers and the stored layers.

* training: a ``FakeQuant<Class>`` layer (:mod:`~torchslim.quantization.fake_quant`, as QAT uses)
  whose ``weight_quantizer`` is a :class:`SignWeightQuantizer` (BinaryConnect / XNOR-Net) or a
  :class:`TernaryWeightQuantizer` (TWN, or TTQ with trained scales); the latent float weight
  is trained with the straight-through estimator, and :class:`BinaryTrainHook` clips it to
  ``[-clip, clip]`` after every step (BinaryConnect, Courbariaux et al. 2015) and keeps TTQ's
  scales positive;
* after training: :func:`convert_binary` makes the ``Quantized<Class>`` layer (codes packed 8 or 4
  per byte in the artifact). TTQ's two scales per channel do not fit ``x_hat = s (q - z)``, so a
  TTQ layer is a ``TTQQuantized<Class>``: the same layer with a ``weight_scale_negative`` buffer
  (``a_n``; ``weight_scale`` holds ``a_p``) and a float weight in its ONNX form (binary and TWN
  layers export int8 codes with ``DequantizeLinear``: exact, but onnxruntime has no 1-2 bit kernel,
  so the runtime gains neither size nor speed from them; the artifact on disk does).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor, nn

from torchslim.core.errors import ModelError
from torchslim.quantization.binary import (
    TWN_THRESHOLD,
    binary_fake_quantize,
    sign_codes,
    ternary_codes,
    ternary_fake_quantize,
    ternary_scales,
    ternary_threshold,
    ttq_dequantize,
    ttq_fake_quantize,
)
from torchslim.quantization.build import dequantize_module, fake_quant_module, quantize_module
from torchslim.quantization.fake_quant import FakeQuantMixin
from torchslim.quantization.functional import EPS, Granularity, binary_scale
from torchslim.quantization.quantized import QuantizedMixin
from torchslim.quantization.specs import WeightSpec
from torchslim.train.hooks import TrainHook, TrainState

TTQ_LAYOUT_KEY = "trained_ternary_scales"
"""Layout key of a TTQ layer (the plan replay rebuilds a ``TTQQuantized<Class>`` from it)."""


class SignWeightQuantizer(nn.Module):
    """Training weight ``mean(|w|) sign(w)`` per granularity row, clipped straight-through gradient."""

    def __init__(self, *, granularity: Granularity, clip: float | None = 1.0) -> None:
        super().__init__()
        self.granularity = granularity
        self.clip = clip

    def forward(self, weight: Tensor) -> Tensor:
        return binary_fake_quantize(weight, self.granularity, clip=self.clip)

    def codes(self, weight: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """``(codes, a, None)`` of the trained latent `weight`."""
        return sign_codes(weight), binary_scale(weight, self.granularity), None

    def clamp_(self) -> None:
        """Nothing to keep positive: the scale is computed from the weight."""

    def extra_repr(self) -> str:
        return f"binary, {self.granularity.kind}, clip={self.clip}"


class TernaryWeightQuantizer(nn.Module):
    """Training weight of TWN (scale recomputed from ``w``) or, with `trained_scales`, of TTQ
    (``a_p`` and ``a_n`` are parameters, initialised from `weight` on each sign's side)."""

    def __init__(
        self,
        weight: Tensor,
        *,
        granularity: Granularity,
        threshold: float = TWN_THRESHOLD,
        clip: float | None = 1.0,
        trained_scales: bool = False,
    ) -> None:
        super().__init__()
        self.granularity = granularity
        self.threshold = float(threshold)
        self.clip = clip
        self.trained_scales = bool(trained_scales)
        if self.trained_scales:
            a_p, a_n = self._initial_scales(weight.detach().float())
            self.positive_scale = nn.Parameter(a_p)
            self.negative_scale = nn.Parameter(a_n)

    def _initial_scales(self, w: Tensor) -> tuple[Tensor, Tensor]:
        g = self.granularity
        codes = ternary_codes(w, ternary_threshold(w, g, factor=self.threshold), g)
        return ternary_scales(w, codes, g)

    def forward(self, weight: Tensor) -> Tensor:
        if self.trained_scales:
            return ttq_fake_quantize(
                weight, self.positive_scale, self.negative_scale, self.granularity, factor=self.threshold
            )
        return ternary_fake_quantize(weight, self.granularity, factor=self.threshold, clip=self.clip)

    def codes(self, weight: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """``(codes, a or a_p, None or a_n)`` of the trained latent `weight`."""
        g = self.granularity
        w = weight.detach().float()
        codes = ternary_codes(w, ternary_threshold(w, g, factor=self.threshold), g)
        if self.trained_scales:
            return (
                codes,
                self.positive_scale.detach().abs().clamp(min=EPS),
                self.negative_scale.detach().abs().clamp(min=EPS),
            )
        rows, nonzero = g.rows(w.abs()), g.rows(codes.float()).abs()
        scale = (rows * nonzero).sum(dim=1) / nonzero.sum(dim=1).clamp(min=1.0)
        return codes, scale.clamp(min=EPS).reshape(g.param_shape(w.shape)), None

    @torch.no_grad()
    def clamp_(self) -> None:
        if self.trained_scales:
            self.positive_scale.abs_().clamp_(min=EPS)
            self.negative_scale.abs_().clamp_(min=EPS)

    def extra_repr(self) -> str:
        kind = "ttq" if self.trained_scales else "twn"
        return f"ternary {kind}, {self.granularity.kind}, threshold={self.threshold}"


WeightQuantizerModule = SignWeightQuantizer | TernaryWeightQuantizer


def binary_fake_quant_module(module: nn.Module, spec: WeightSpec, quantizer: WeightQuantizerModule) -> FakeQuantMixin:
    """A ``FakeQuant<Class>`` copy of `module` whose weight passes through `quantizer` (weight only)."""
    scale_shape = spec.granularity.param_shape(module.weight.shape)  # type: ignore[union-attr,arg-type]  # Linear / Conv
    new = fake_quant_module(
        module,
        weight_spec=spec,
        weight_scale=torch.ones(scale_shape),
        weight_zero_point=torch.zeros(scale_shape, dtype=torch.int32),
        learn_scales=False,
    )
    new.add_module("weight_quantizer", quantizer)
    return new


class BinaryTrainHook(TrainHook):
    """After every optimizer step: clip latent binary / ternary weights to ``[-clip, clip]``
    (BinaryConnect) and keep trained ternary scales positive."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def _layers(self) -> list[FakeQuantMixin]:
        return [
            m
            for m in self.model.modules()
            if isinstance(m, FakeQuantMixin)
            and isinstance(m._modules.get("weight_quantizer"), (SignWeightQuantizer, TernaryWeightQuantizer))
        ]

    @torch.no_grad()
    def on_step_end(self, state: TrainState) -> None:
        for layer in self._layers():
            quantizer = layer._modules["weight_quantizer"]
            assert isinstance(quantizer, (SignWeightQuantizer, TernaryWeightQuantizer))
            quantizer.clamp_()
            if quantizer.clip is not None:
                layer.weight_float.clamp_(-quantizer.clip, quantizer.clip)


# ---- TTQ's stored layer ---------------------------------------------------------------------------
class TTQMixin(QuantizedMixin):
    """A quantized layer with ternary codes and two scales per row: ``a_p`` (``weight_scale``)
    for +1 and ``a_n`` (``weight_scale_negative``) for -1 (TTQ, Zhu et al. 2017)."""

    weight_scale_negative: Tensor

    def _dequantized_weight(self) -> Tensor:
        return ttq_dequantize(
            self.weight_q, self.weight_scale, self.weight_scale_negative, self.weight_spec.granularity
        )

    def integer_export(self) -> bool:
        """False: no ``DequantizeLinear`` has two scales, so the ONNX form holds the float weight."""
        return False

    def layout(self) -> dict[str, Any]:
        return {**super().layout(), TTQ_LAYOUT_KEY: True}


@functools.cache
def ttq_class(quantized_cls: type) -> type:
    """The ``TTQ<Quantized class>`` subclass (cached per class)."""
    return type(f"TTQ{quantized_cls.__name__}", (TTQMixin, quantized_cls), {"__module__": __name__})


def make_ttq(layer: QuantizedMixin, negative_scale: Tensor) -> TTQMixin:
    """Turn a ternary quantized `layer` (in place) into its TTQ form with ``a_n`` = `negative_scale`."""
    if layer.weight_spec.levels != "ternary":
        raise ModelError(f"trained ternary scales need ternary levels, the layer has {layer.weight_spec.levels!r}.")
    shape = tuple(layer.weight_scale.shape)
    if tuple(negative_scale.shape) != shape:
        raise ModelError(f"negative scale shape {list(negative_scale.shape)} does not match {list(shape)}.")
    quantized_cls: type = type(layer)
    layer.__class__ = ttq_class(quantized_cls)
    layer.register_buffer("weight_scale_negative", negative_scale.detach().float().clone())
    layer.__dict__.pop("_weight_cache", None)
    assert isinstance(layer, TTQMixin)
    return layer


def convert_binary(module: nn.Module) -> QuantizedMixin:
    """The quantized layer a trained binary / ternary ``FakeQuant<Class>`` stands for (same outputs)."""
    quantizer = module._modules.get("weight_quantizer")
    if not isinstance(module, FakeQuantMixin) or not isinstance(
        quantizer, (SignWeightQuantizer, TernaryWeightQuantizer)
    ):
        raise ModelError(f"{type(module).__name__} has no binary or ternary weight quantizer.")
    codes, scale, negative = quantizer.codes(module.masked_weight_float())
    shell = dequantize_module(module)
    spec = module.weight_spec
    layer = quantize_module(
        shell, weight_spec=spec, codes=codes, scale=scale, zero_point=torch.zeros_like(scale, dtype=torch.int32)
    )
    return layer if negative is None else make_ttq(layer, negative)


__all__ = [
    "TTQ_LAYOUT_KEY",
    "BinaryTrainHook",
    "SignWeightQuantizer",
    "TTQMixin",
    "TernaryWeightQuantizer",
    "binary_fake_quant_module",
    "convert_binary",
    "make_ttq",
    "ttq_class",
]
