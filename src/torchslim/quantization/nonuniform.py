"""Non-uniform weight quantization techniques: ``kmeans_quant`` and ``pow2_quant``.

Both go through the quantizer composition: a
:class:`~torchslim.quantization.quantizer.WeightQuantizer` of their level type
(:class:`~torchslim.quantization.kmeans.KMeansLevels`,
:class:`~torchslim.quantization.pow2.PowerOfTwoLevels` / ``APoTLevels``) x a granularity fits the
levels to each selected layer's weight and assigns every weight to its nearest level (no labels
needed: post-training). The layers become ``Quantized<Class>`` layers whose codes are stored packed
at ``b`` bits next to their codebook or scales (or entropy coded after an ``entropy_code`` step),
rebuilt on load by the ``quantize`` plan replay; their ONNX form is the dequantized float weight
(the runtime gains no speed from these levels, the artifact gains the size).

``kmeans_quant`` with ``train.epochs > 0`` then fine-tunes the centroids as Deep Compression does
(Han et al. 2016, section 3.3): the indices stay fixed and each centroid moves by the sum of the
gradients of the weights that share it,

    dL/dc_k = sum_{i, j} dL/dW_ij * 1(I_ij = k)

which is exactly the backward of the codebook gather ``W = c[I]``; the codebooks become parameters
for the run (:class:`CentroidFineTuneHook`, through the one training loop ``train_in_context``), a
pinned zero centroid of a pruned layer stays exactly 0, and biases train along.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from torchslim.core.config import TechniqueConfig
from torchslim.core.context import Context
from torchslim.core.errors import TargetError
from torchslim.core.plans import append_plan_entry
from torchslim.core.targets import Targets
from torchslim.core.technique import TECHNIQUES, StepOutcome
from torchslim.quantization.build import quantize_module
from torchslim.quantization.conv1d import tied_groups
from torchslim.quantization.functional import Granularity
from torchslim.quantization.kmeans import KMeansLevels
from torchslim.quantization.levels import Levels
from torchslim.quantization.plan import LayerChoice, plan_layers
from torchslim.quantization.pow2 import APoTLevels, PowerOfTwoLevels
from torchslim.quantization.ptq import set_module
from torchslim.quantization.quantized import QuantizedMixin
from torchslim.quantization.quantizer import WeightQuantizer
from torchslim.quantization.report import plan_entry, report_layers
from torchslim.quantization.specs import WeightSpec
from torchslim.train import TrainConfig, train_in_context
from torchslim.train.hooks import TrainHook, TrainState

CENTROID_TRAIN_DEFAULTS: dict[str, Any] = {"epochs": 0, "lr": 1e-4, "schedule": "cosine"}
"""k-means fine-tuning defaults: none (post-training); with epochs, a small learning rate."""


def _centroid_train() -> TrainConfig:
    return TrainConfig(**CENTROID_TRAIN_DEFAULTS)


def _granularity(kind: str) -> Granularity:
    return Granularity.per_tensor() if kind == "per_tensor" else Granularity.per_channel(0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class KMeansQuant(TechniqueConfig):
    """k-means weight sharing (Han, Mao & Dally 2016, "Deep compression", section 3).

    Each layer's weights are clustered into ``k = 2**bits`` centroids minimising
    ``sum_j sum_{w in C_j} |w - c_j|^2`` (Lloyd's algorithm); a weight is stored as its ``bits``-bit
    cluster index next to the codebook. Pruned zeros keep a pinned 0.0 centroid.

    Attributes:
        bits: index bits, 2-8 (``2**bits`` centroids per codebook).
        granularity: ``per_tensor`` (one codebook per layer, as in the paper) or ``per_channel``
            (one per output channel).
        init: ``optimal`` (the default: the exact 1-D k-means, Gronlund et al. 2017, via ``kmeans1d``;
            post-training on lenet-300-100 it matched coremltools' palettization to 0.03 points at 2-4
            bits where Lloyd from ``linear`` was 0.1-0.3 points off: benchmarks/results/nonuniform.md),
            ``linear`` (equally spaced in ``[min, max]``; Han et al.'s choice before centroid fine-tuning,
            pinned by the deep-compression recipe), ``density`` (equal mass quantiles) or ``kmeans++``
            (Arthur & Vassilvitskii 2007).
        iterations: at most this many Lloyd iterations (it stops when the centroids stop moving).
        train: centroid fine-tuning; ``epochs: 0`` (the default) is post-training weight sharing.
    """

    name: ClassVar[str] = "kmeans_quant"
    summary: ClassVar[str] = (
        "k-means weight sharing (Deep Compression): a 2^b codebook per layer or channel, exact 1-D / linear / "
        "density / k-means++ init, b-bit packed indices, optional centroid fine-tuning."
    )

    bits: int = 4
    granularity: Literal["per_tensor", "per_channel"] = "per_tensor"
    init: Literal["linear", "density", "kmeans++", "optimal"] = "optimal"
    iterations: int = 30
    train: TrainConfig = dataclasses.field(default_factory=_centroid_train)

    def __post_init__(self) -> None:
        if isinstance(self.train, dict):
            object.__setattr__(self, "train", TrainConfig.from_dict({**CENTROID_TRAIN_DEFAULTS, **self.train}))
        super().__post_init__()

    def validate(self) -> None:
        self.check("bits", self.bits, low=2, high=8)
        self.check("iterations", self.iterations, low=1)

    def levels(self, seed: int) -> KMeansLevels:
        return KMeansLevels(bits=self.bits, init=self.init, iterations=self.iterations, seed=seed)

    def spec(self) -> WeightSpec:
        return WeightSpec(self.bits, True, _granularity(self.granularity), KMeansLevels.name)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PowerOfTwoQuant(TechniqueConfig):
    """Power-of-two (logarithmic) weights (Miyashita et al. 2016), or APoT (Li et al. 2020).

    ``w_hat = s * sign(q) * 2**(|q| - m)`` or 0, ``m = 2**(bits-1) - 1``, with a power-of-two scale
    ``s``: every weight is exactly 0 or ``+-2**e``, so a multiply is a shift. APoT:
    ``w_hat = s * sign(q) * (p0 + p1)``, a sum of two powers of two.

    Attributes:
        bits: code bits, 2-8 (a sign and ``2**(bits-1) - 1`` magnitudes).
        granularity: ``per_tensor`` or ``per_channel`` (one scale per output channel).
        apot: additive powers-of-two levels instead of single powers.
        scale_pow2: round the scale to a power of two (weights exact powers of two); false keeps
            ``s = max |w|`` of the row.
    """

    name: ClassVar[str] = "pow2_quant"
    summary: ClassVar[str] = (
        "Power-of-two / logarithmic weights (0 or +-2^k times a power-of-two scale; APoT: sums of two powers), "
        "b-bit packed codes."
    )

    bits: int = 4
    granularity: Literal["per_tensor", "per_channel"] = "per_channel"
    apot: bool = False
    scale_pow2: bool = True

    def validate(self) -> None:
        self.check("bits", self.bits, low=2, high=8)

    def levels(self, seed: int) -> Levels:
        cls = APoTLevels if self.apot else PowerOfTwoLevels
        return cls(bits=self.bits, scale_pow2=self.scale_pow2)

    def spec(self) -> WeightSpec:
        name = APoTLevels.name if self.apot else PowerOfTwoLevels.name
        return WeightSpec(self.bits, True, _granularity(self.granularity), name)


class CentroidFineTuneHook(TrainHook):
    """Keeps a pinned zero centroid (a pruned layer's 0.0) exactly 0 after every optimizer step."""

    def __init__(self, layers: list[QuantizedMixin]) -> None:
        self.pinned = [(layer, layer.weight_scale.detach() == 0) for layer in layers]

    def _reset(self) -> None:
        with torch.no_grad():
            for layer, pinned in self.pinned:
                layer.weight_scale.masked_fill_(pinned.to(layer.weight_scale.device), 0.0)

    def on_before_optimizer_step(self, state: TrainState) -> None:
        for layer, pinned in self.pinned:
            grad = layer.weight_scale.grad
            if grad is not None:
                grad.masked_fill_(pinned.to(grad.device), 0.0)

    def on_step_end(self, state: TrainState) -> None:
        self._reset()


def _set_codebooks_trainable(layers: list[QuantizedMixin], trainable: bool) -> None:
    """Move each layer's codebook between its buffers and its parameters (same name, same state key)."""
    for layer in layers:
        value = layer.weight_scale.detach().clone()
        layer._buffers.pop("weight_scale", None)
        layer._parameters.pop("weight_scale", None)
        if trainable:
            layer.register_parameter("weight_scale", nn.Parameter(value))
        else:
            layer.register_buffer("weight_scale", value)
        layer.__dict__.pop("_weight_cache", None)


def fine_tune_centroids(
    model: nn.Module, layers: list[QuantizedMixin], config: TrainConfig, context: Context
) -> dict[str, Any]:
    """Train the codebooks of `layers` (and every other float parameter) with the one training loop."""
    home = next((p.device for p in model.parameters()), torch.device("cpu"))
    _set_codebooks_trainable(layers, True)
    try:
        result = train_in_context(
            model, config=config, context=context, technique=KMeansQuant.name, hooks=[CentroidFineTuneHook(layers)]
        )
    finally:
        _set_codebooks_trainable(layers, False)
        model.to(home)
        model.eval()
    facts: dict[str, Any] = {"epochs": config.epochs, "lr": config.lr}
    for key in ("steps", "final_loss", "seconds"):
        value = getattr(result, key, None)
        if isinstance(value, (int, float)):
            facts[key] = value
    return facts


def _choices(
    work: nn.Module, spec: WeightSpec, targets: Targets | None, technique: str
) -> tuple[list[LayerChoice], dict[str, str]]:
    choices, skipped = plan_layers(work, targets=targets, weight_spec=spec, act_spec=None, method="minmax")
    tied = {name for group in tied_groups([(c.name, c.module) for c in choices]) for name in group}
    for name in tied:
        skipped[name] = "weight tied with another layer: kept float, so the model keeps one copy of it"
    choices = [c for c in choices if c.name not in tied]
    if not choices:
        why = "; ".join(f"{name}: {reason}" for name, reason in list(skipped.items())[:3])
        raise TargetError(
            f"{technique}: none of the selected modules can be quantized (only Linear, Conv and Embedding layers "
            "can); check the step's targets." + (f" Kept float: {why}." if why else "")
        )
    return choices, skipped


def quantize_with_levels(
    model: nn.Module, levels: Levels, spec: WeightSpec, *, targets: Targets | None, technique: str
) -> tuple[nn.Module, list[LayerChoice], dict[str, nn.Module], dict[str, str]]:
    """A copy of `model` with the selected layers quantized to `levels` (fitted per layer)."""
    work = copy.deepcopy(model).eval()
    choices, skipped = _choices(work, spec, targets, technique)
    quantizer = WeightQuantizer(levels, spec.granularity)
    originals: dict[str, nn.Module] = {}
    for choice in choices:
        weight = choice.module.weight
        assert isinstance(weight, Tensor)
        codes, scale, zero_point = quantizer.quantize(weight.detach().float())
        new = quantize_module(choice.module, weight_spec=spec, codes=codes, scale=scale, zero_point=zero_point)
        originals[choice.name] = choice.module
        set_module(work, choice.name, new)
    return work, choices, originals, skipped


def _finish(
    work: nn.Module, choices: list[LayerChoice], originals: dict[str, nn.Module], info: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows, report_info = report_layers(work, choices, originals, None, None, method_label=lambda c: c.weight_spec.levels)
    info.update(report_info)
    append_plan_entry(work, plan_entry(work, [c.name for c in choices]))
    return rows, info


@TECHNIQUES.handles(KMeansQuant)
def kmeans_quant_handler(
    model: nn.Module, config: KMeansQuant, *, targets: Targets | None, context: Context
) -> StepOutcome:
    """k-means weight sharing of the selected layers, then centroid fine-tuning when asked."""
    spec = config.spec()
    fine_tune = config.train.epochs > 0
    if fine_tune:
        context.require_data("train", technique=f"{KMeansQuant.name} (train.epochs > 0)")
    work, choices, originals, skipped = quantize_with_levels(
        model, config.levels(context.seed), spec, targets=targets, technique=KMeansQuant.name
    )
    info: dict[str, Any] = {"levels": spec.levels, "bits": config.bits, "init": config.init}
    if fine_tune:
        layers = [m for c in choices if isinstance(m := work.get_submodule(c.name), QuantizedMixin)]
        info["fine_tune"] = fine_tune_centroids(work, layers, config.train, context)
    rows, info = _finish(work, choices, originals, info)
    return StepOutcome(model=work, layers=rows, skipped=skipped, info=info)


@TECHNIQUES.handles(PowerOfTwoQuant)
def pow2_quant_handler(
    model: nn.Module, config: PowerOfTwoQuant, *, targets: Targets | None, context: Context
) -> StepOutcome:
    """Power-of-two (or APoT) weights for the selected layers, post-training."""
    spec = config.spec()
    work, choices, originals, skipped = quantize_with_levels(
        model, config.levels(context.seed), spec, targets=targets, technique=PowerOfTwoQuant.name
    )
    rows, info = _finish(work, choices, originals, {"levels": spec.levels, "bits": config.bits})
    return StepOutcome(model=work, layers=rows, skipped=skipped, info=info)


__all__ = [
    "CentroidFineTuneHook",
    "KMeansQuant",
    "PowerOfTwoQuant",
    "fine_tune_centroids",
    "kmeans_quant_handler",
    "pow2_quant_handler",
    "quantize_with_levels",
]
