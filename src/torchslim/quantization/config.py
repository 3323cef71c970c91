"""The ``quantize`` technique's config: :class:`Quantize`, nesting :class:`WeightQuant`,
:class:`ActivationQuant` and the QAT :class:`~torchslim.train.TrainConfig`.

YAML::

    - technique: quantize
      targets: {exclude: [classifier]}
      config:
        mode: ptq
        weights: {bits: 4, granularity: per_group, group_size: 32, range: gptq}
        activations: null            # weight-only; a mapping (or {}) quantizes layer inputs

Recipes written with the earlier flat keys (``bits``, ``method``, ``activations: true``, ``lr``, ...)
keep working: :meth:`Quantize.from_dict` moves each to its nested place with a
:class:`FutureWarning` naming the new key (see :attr:`Quantize.renamed`).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from torch import nn

from torchslim.core.config import TechniqueConfig
from torchslim.core.errors import ConfigError, did_you_mean
from torchslim.quantization.functional import Granularity
from torchslim.quantization.levels import LEVELS
from torchslim.quantization.ranges import resolve_range
from torchslim.quantization.specs import ActivationSpec, WeightSpec
from torchslim.train.config import TrainConfig

QAT_TRAIN_DEFAULTS: dict[str, Any] = {"epochs": 1, "lr": 1e-4, "schedule": "cosine"}
"""QAT's own training defaults (fine-tuning from a trained model: a small learning rate)."""


NONUNIFORM_TECHNIQUE = {"kmeans": "kmeans_quant", "pow2": "pow2_quant", "apot": "pow2_quant"}
"""Level types that have their own technique (fitted levels, no activation or QAT path in ``quantize``)."""


def _qat_train() -> TrainConfig:
    return TrainConfig(**QAT_TRAIN_DEFAULTS)


@dataclasses.dataclass(frozen=True, kw_only=True)
class WeightQuant(TechniqueConfig):
    """How weights are quantized: levels x granularity x range estimator.

    Attributes:
        levels: the level type (``uniform``: ``b``-bit integers; 1 bit = binary ``{-a, +a}``).
        bits: weight bit-width, 1-8.
        granularity: ``per_tensor``, ``per_channel`` or ``per_group`` (groups of `group_size`
            consecutive weights of each channel's flattened slice).
        axis: the weight's channel axis for per-channel / per-group (0 = output channels).
        group_size: elements per group for ``per_group``.
        symmetric: symmetric weights (zero point 0) or asymmetric.
        range: the range estimator: ``minmax``, ``percentile``, ``mse`` (range search) or ``gptq``
            (error-compensating, needs calibration data); ``auto`` = GPTQ at 2-4 bits for PTQ with
            calibration data, the MSE range otherwise; QAT starts LSQ from the chosen range.
        percentile: for ``range: percentile``.
        layer_bits: per-layer bit-widths, ``{name or "re:<regex>": bits}`` (mixed precision).
        gptq_block_size / gptq_damp: GPTQ's lazy-update block and Hessian dampening (fraction of the
            mean diagonal).
    """

    levels: str = "uniform"
    bits: int = 8
    granularity: Literal["per_tensor", "per_channel", "per_group"] = "per_channel"
    axis: int = 0
    group_size: int = 128
    symmetric: bool = True
    range: Literal["auto", "minmax", "percentile", "mse", "gptq"] = "auto"
    percentile: float = 99.99
    layer_bits: dict[str, int] = dataclasses.field(default_factory=dict)
    gptq_block_size: int = 128
    gptq_damp: float = 0.01

    def validate(self) -> None:
        if self.levels not in LEVELS:
            raise ConfigError(
                f"WeightQuant.levels={self.levels!r} is not one of {LEVELS.names()}."
                + did_you_mean(self.levels, LEVELS.names())
            )
        self.check("bits", self.bits, low=1, high=8)
        self.check("group_size", self.group_size, low=1)
        self.check("percentile", self.percentile, low=50, high=100, low_inclusive=False)
        self.check("gptq_block_size", self.gptq_block_size, low=1)
        self.check("gptq_damp", self.gptq_damp, low=0, low_inclusive=False)
        for pattern, bits in self.layer_bits.items():
            if not isinstance(pattern, str) or not pattern:
                raise ConfigError(
                    f"WeightQuant.layer_bits keys must be layer names or 're:' patterns, got {pattern!r}."
                )
            if pattern.startswith("re:"):
                try:
                    re.compile(pattern[3:])
                except re.error as exc:
                    raise ConfigError(f"WeightQuant.layer_bits: bad regex {pattern!r}: {exc}.") from None
            if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
                raise ConfigError(f"WeightQuant.layer_bits[{pattern!r}]={bits!r} is out of range [1, 8].")

    def spec(self) -> WeightSpec:
        if self.granularity == "per_tensor":
            g = Granularity.per_tensor()
        elif self.granularity == "per_channel":
            g = Granularity.per_channel(self.axis)
        else:
            g = Granularity.per_group(self.group_size, self.axis)
        return WeightSpec(self.bits, self.symmetric, g, self.levels)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ActivationQuant(TechniqueConfig):
    """How each quantized layer's input is quantized.

    Attributes:
        mode: ``static`` (calibrated scale), ``dynamic`` (range of each input at run time, int8; for
            Linear-heavy models such as transformers) or ``auto``, decided per layer type:
            convolutions get static int8 in any model (integer kernels in onnxruntime; a model
            with attention and no calibration data keeps them dynamic, with a note), Linear layers
            (and GPT-2-style ``Conv1D``) get dynamic int8 in models with attention
            (:func:`transformer_like`: measured faster for MiniLM, see
            benchmarks/results/quantization.md) and static int8 otherwise (a CNN's head).
        bits / symmetric: static input quantization (dynamic is 8-bit asymmetric).
        dynamic_granularity: ``per_tensor`` (ONNX DynamicQuantizeLinear, which onnxruntime fuses
            into DynamicQuantizeMatMul: the fast path) or ``per_token`` (a range per row of the last
            dimension; accurate without calibration data but exported as unfused ReduceMin/Max +
            MatMulInteger, about as slow as float on onnxruntime).
        observer: calibration range observer: ``minmax``, ``moving_average``, ``percentile``, ``mse``.
        percentile: for the ``percentile`` observer.
    """

    mode: Literal["auto", "static", "dynamic"] = "auto"
    bits: int = 8
    symmetric: bool = False
    dynamic_granularity: Literal["per_token", "per_tensor"] = "per_tensor"
    observer: Literal["minmax", "moving_average", "percentile", "mse"] = "minmax"
    percentile: float = 99.99

    def validate(self) -> None:
        self.check("bits", self.bits, low=1, high=8)
        self.check("percentile", self.percentile, low=50, high=100, low_inclusive=False)
        if self.mode == "dynamic" and (self.bits != 8 or self.symmetric):
            raise ConfigError(
                "ActivationQuant.mode='dynamic' quantizes inputs to 8-bit asymmetric (ONNX DynamicQuantizeLinear); "
                f"bits={self.bits}, symmetric={self.symmetric} cannot be honoured."
            )

    def spec(self, model: nn.Module) -> ActivationSpec:
        mode = self.mode
        if mode == "auto":
            mode = "dynamic" if transformer_like(model) else "static"
        if mode == "dynamic":
            return ActivationSpec("dynamic", 8, False, self.dynamic_granularity)
        return ActivationSpec("static", self.bits, self.symmetric)

    def layer_spec(self, module: nn.Module, model_spec: ActivationSpec, *, has_data: bool) -> ActivationSpec:
        """The spec of one layer given the model's (:meth:`spec`): under ``auto``, a convolution is
        static int8 (integer kernels) in any model when calibration data is given."""
        if self.mode == "auto" and has_data and not model_spec.static and isinstance(module, nn.modules.conv._ConvNd):
            return ActivationSpec("static", self.bits, self.symmetric)
        return model_spec


_ACTIVATION_KEYS = ("activation_mode", "activation_bits", "activation_symmetric", "dynamic_granularity", "observer")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Quantize(TechniqueConfig):
    """Quantization of weights (1-8 bits) and layer inputs (int8), post-training or QAT.

    Attributes:
        weights: :class:`WeightQuant` (levels, bits, granularity, range estimator, mixed precision).
        activations: :class:`ActivationQuant`, or None for weight-only quantization.
        train: QAT's training (``mode: qat`` only); a partial mapping keeps QAT's defaults
            (1 epoch, lr 1e-4, cosine schedule) for the keys it does not set.
        mode: ``ptq`` (post-training) or ``qat`` (quantization-aware training with LSQ).
        learn_scales: QAT learns the step sizes (LSQ, Esser et al. 2020); false keeps the initial ones.
        calibration_samples: samples taken from the calibration split.
        bias_correction: empirical bias correction (Nagel et al. 2019). ``auto`` (the default) applies it in
            PTQ whenever calibration data is given and the weights are not GPTQ's (which already
            compensates its rounding); measured: EfficientNet-Lite0 top-1 agreement with fp32 0.828 -> 0.914,
            no loss on the other benchmark models (docs/quantization.md). True requires calibration data.
        fold_batchnorm: fold BatchNorm into the preceding convolution first.
        outlier_channels: for Linear layers with dynamic per-tensor inputs, split the `k` input
            channels with the largest calibration range into copies so that none exceeds the
            ``(k+1)``-th largest (outlier channel splitting, Zhao et al. 2019; exact in float). 0 turns
            it off; it needs calibration data (without it, layers are not split).
        quantize_single_channel_convs: with static input quantization, also quantize convolutions
            with one input channel (a grayscale model's first layer). Off by default: they stay
            float and the report says why (onnxruntime's int8 convolution packs input channels in
            fours and such a layer is bound by its outputs; see benchmarks/results/).
        quantize_residual_outputs: with static input quantization (PTQ), also quantize to 8 bits the
            output of a convolution whose output reaches no quantized layer's input (the branches
            of a residual ``Add``, found with ``torch.fx``), so onnxruntime can run it as an integer
            kernel (it fuses ``DQ -> Conv -> Q`` only); costs one more rounding on that branch.
        integer_graph: with 8-bit asymmetric static activations (PTQ) and
            `quantize_residual_outputs`, also quantize every residual ``Add`` output (after its
            ReLU) and every float ``Add`` input to 8 bits, calibrated like the layer inputs, so
            the Adds, ReLUs and pooling between the convolutions run as integer kernels
            (``QLinearAdd``, ``QLinearGlobalAveragePool``) and a ResNet has one Quantize at its input
            (see :mod:`torchslim.quantization.int8_graph`; speed in benchmarks/results/int8_profile.md).
    """

    name: ClassVar[str] = "quantize"
    summary: ClassVar[str] = (
        "Uniform 1-8 bit quantization: PTQ (min-max / percentile / MSE / GPTQ, bias correction, BN folding) "
        "or QAT (LSQ); static or dynamic int8 activations; ONNX QDQ deployment and packed artifacts."
    )
    renamed: ClassVar[Mapping[str, str]] = {
        "bits": "weights.bits",
        "granularity": "weights.granularity",
        "axis": "weights.axis",
        "group_size": "weights.group_size",
        "symmetric": "weights.symmetric",
        "method": "weights.range",
        "percentile": "weights.percentile",
        "layer_bits": "weights.layer_bits",
        "gptq_block_size": "weights.gptq_block_size",
        "gptq_damp": "weights.gptq_damp",
        "activation_mode": "activations.mode",
        "activation_bits": "activations.bits",
        "activation_symmetric": "activations.symmetric",
        "dynamic_granularity": "activations.dynamic_granularity",
        "observer": "activations.observer",
        "epochs": "train.epochs",
        "max_steps": "train.max_steps",
        "lr": "train.lr",
        "optimizer": "train.optimizer",
        "weight_decay": "train.weight_decay",
        "schedule": "train.schedule",
    }

    weights: WeightQuant = dataclasses.field(default_factory=WeightQuant)
    activations: ActivationQuant | None = dataclasses.field(default_factory=ActivationQuant)
    train: TrainConfig = dataclasses.field(default_factory=_qat_train)
    mode: Literal["ptq", "qat"] = "ptq"
    learn_scales: bool = True
    calibration_samples: int = 512
    bias_correction: bool | Literal["auto"] = "auto"
    fold_batchnorm: bool = True
    outlier_channels: int = 8
    quantize_single_channel_convs: bool = False
    quantize_residual_outputs: bool = True
    integer_graph: bool = True

    def __post_init__(self) -> None:
        # sections given as mappings are built here, so their own errors ("did you mean") surface
        if isinstance(self.activations, Mapping):
            object.__setattr__(self, "activations", ActivationQuant.from_dict(self.activations))
        if isinstance(self.train, Mapping):
            object.__setattr__(self, "train", TrainConfig.from_dict({**QAT_TRAIN_DEFAULTS, **self.train}))
        super().__post_init__()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Quantize:
        """Build from a mapping; the earlier flat keys move to their sections (see :attr:`renamed`)."""
        data = dict(data or {})
        known = cls.field_names()
        for key in data:
            if key not in known and key not in cls.renamed:
                close = difflib.get_close_matches(str(key), known + list(cls.renamed), n=1, cutoff=0.5)
                hint = (
                    f" Did you mean {close[0]!r}"
                    + (f" (now {cls.renamed[close[0]]!r})" if close and close[0] in cls.renamed else "")
                    + "?"
                    if close
                    else ""
                )
                raise ConfigError(f"Unknown key {key!r} for technique 'quantize'; known keys: {known}." + hint)
        config = super().from_dict(_migrate_flat(data))
        assert isinstance(config, Quantize)
        return config

    def validate(self) -> None:
        self.check("outlier_channels", self.outlier_channels, low=0)
        self.check("calibration_samples", self.calibration_samples, low=1)
        if self.weights.levels in NONUNIFORM_TECHNIQUE:
            raise ConfigError(
                f"Quantize.weights.levels={self.weights.levels!r}: use the technique "
                f"{NONUNIFORM_TECHNIQUE[self.weights.levels]!r} (weight-only, levels fitted to each layer)."
            )
        if self.mode == "ptq" and self.weights.range == "gptq" and self.weights.bits == 1:
            raise ConfigError("Quantize.weights.range='gptq' needs bits >= 2 (1-bit weights use the binary quantizer).")

    # -- derived settings --------------------------------------------------------------------
    def weight_spec(self) -> WeightSpec:
        return self.weights.spec()

    def activation_spec(self, model: nn.Module) -> ActivationSpec | None:
        return None if self.activations is None else self.activations.spec(model)

    def corrects_bias(self, *, method: str, has_data: bool) -> bool:
        """Whether PTQ applies bias correction, with ``auto`` resolved (`method`: the resolved weight range)."""
        if self.bias_correction != "auto":
            return bool(self.bias_correction)
        return self.mode == "ptq" and has_data and method != "gptq"

    def weight_method(self, *, has_data: bool) -> str:
        """The weight range estimator, with ``auto`` resolved."""
        return resolve_range(self.weights.range, bits=self.weights.bits, mode=self.mode, has_data=has_data)


def _migrate_flat(data: dict[str, Any]) -> dict[str, Any]:
    """The pre-step of :meth:`Quantize.from_dict` for the earlier flat keys ``renamed`` cannot move:
    ``activations: true/false`` (now a section or null) and ``percentile`` (now in both sections)."""
    acts = data.get("activations")
    if isinstance(acts, bool):
        warnings.warn(
            f"quantize: 'activations: {str(acts).lower()}' is now "
            + ("'activations: {mode: auto}' (a section; {} keeps its defaults)" if acts else "'activations: null'")
            + "; please update the recipe.",
            FutureWarning,
            stacklevel=3,
        )
        data["activations"] = {} if acts else None
    if data.get("activations", {}) is None:
        for key in _ACTIVATION_KEYS:  # settings of inputs that stay float: they never had an effect
            data.pop(key, None)
    elif "percentile" in data:
        section = dict(data.get("activations") or {})
        section.setdefault("percentile", data["percentile"])
        data["activations"] = section
    return data


Uniform = Quantize
"""The design guide's name for :class:`Quantize` (``ts.quantization.Uniform(weights=WeightQuant(bits=8))``)."""


def transformer_like(model: nn.Module) -> bool:
    """True for models built around attention (dynamic int8 suits their Linear layers best): an
    ``nn.MultiheadAttention`` or a class named ``*Attention``, or a Hugging Face ``PreTrainedModel``
    without convolutions. A CNN from ``transformers`` (ResNet, ConvNeXt, ...) is not."""
    pretrained = False
    has_conv = False
    for module in model.modules():
        if isinstance(module, nn.MultiheadAttention) or type(module).__name__.endswith("Attention"):
            return True
        pretrained = pretrained or any(k.__name__ == "PreTrainedModel" for k in type(module).__mro__)
        has_conv = has_conv or isinstance(module, nn.modules.conv._ConvNd)
    return pretrained and not has_conv


__all__ = ["ActivationQuant", "QAT_TRAIN_DEFAULTS", "Quantize", "Uniform", "WeightQuant", "transformer_like"]
