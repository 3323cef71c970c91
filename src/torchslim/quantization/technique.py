"""The ``quantize`` recipe technique: config :class:`Quantize` and its handler.

YAML::

    - technique: quantize
      targets: {exclude: [classifier]}
      config: {bits: 8, granularity: per_channel, activations: true, mode: ptq, method: minmax}

The handler checks everything it can before any work (bit-widths, targets, the per-channel axis
of every layer, NaN weights, calibration data: present, non-empty, finite, of the model's shape),
then quantizes a copy of the model, so a failure never leaves a half-quantized model behind.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from typing import Any, ClassVar, Literal

from torch import nn

from torchslim.core.config import TechniqueConfig
from torchslim.core.context import Context
from torchslim.core.errors import ConfigError, DataError, ModelError, TargetError
from torchslim.core.targets import Targets
from torchslim.core.technique import TECHNIQUES, StepOutcome
from torchslim.quantization.calibration import check_against_example, check_model_runs, take_calibration
from torchslim.quantization.functional import Granularity
from torchslim.quantization.modules import ActivationSpec, WeightSpec, empty_quantized
from torchslim.quantization.ptq import (
    LayerChoice,
    append_plan,
    collect_stats,
    plan_entry,
    plan_layers,
    quantize_layers,
    report_layers,
    set_module,
    unquantized_outputs,
)

PLAN_KIND = "quantize"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Quantize(TechniqueConfig):
    """Uniform quantization of weights (1-8 bits) and layer inputs (int8), post-training or QAT.

    Attributes:
        bits: weight bit-width, 1-8 (1 = binary ``{-a, +a}``).
        granularity: ``per_tensor``, ``per_channel`` or ``per_group`` (groups of `group_size`
            consecutive weights of each channel's flattened slice).
        axis: the weight's channel axis for per-channel / per-group (0 = output channels).
        group_size: elements per group for ``per_group``.
        symmetric: symmetric weights (zero point 0) or asymmetric.
        activations: also quantize each layer's input.
        activation_mode: ``static`` (calibrated scale), ``dynamic`` (range of each input at run
            time, int8, per tensor; for Linear-heavy models such as transformers) or ``auto``
            (dynamic for transformer-like models, static otherwise).
        activation_bits / activation_symmetric: static input quantization (dynamic is 8-bit asymmetric).
        dynamic_granularity: ``per_tensor`` (ONNX DynamicQuantizeLinear, which onnxruntime fuses into
            DynamicQuantizeMatMul: the fast path) or ``per_token`` (a range per row of the last
            dimension; accurate without calibration data but exported as unfused ReduceMin/Max +
            MatMulInteger, about as slow as float on onnxruntime).
        outlier_channels: for Linear layers with dynamic per-tensor inputs, split the `k` input
            channels with the largest calibration range into copies so that none exceeds the
            ``(k+1)``-th largest (outlier channel splitting, Zhao et al. 2019; exact in float, the
            weight columns are repeated). On MiniLM-L6 (k = 8) it brings per-tensor int8 to per-token
            accuracy. 0 turns it off; it needs calibration data (without it, layers are not split).
        quantize_single_channel_convs: with static input quantization, also quantize convolutions
            with one input channel (a grayscale model's first layer). Off by default: they stay
            float and the report says why. onnxruntime's int8 convolution packs input channels in
            fours and such a layer is bound by its outputs, so int8 does not make it faster (on
            fmnist-cnn, onnxruntime, the whole int8 model ran 0.65x of fp32 with conv1 float vs
            0.75x with conv1 int8 at batch 64 and 2 threads; 0.58x vs 0.72x at batch 1).
        quantize_residual_outputs: with static input quantization (PTQ), also quantize to 8 bits the
            output of a convolution whose output reaches no quantized layer's input (the branches
            of a residual ``Add``, found with ``torch.fx``), so onnxruntime can run it as an integer
            kernel (it fuses ``DQ -> Conv -> Q`` only); costs one more rounding on that branch.
        observer: activation range observer: ``minmax``, ``moving_average``, ``percentile``, ``mse``.
        percentile: for the ``percentile`` observer / method.
        mode: ``ptq`` (post-training) or ``qat`` (quantization-aware training with LSQ).
        method: weight rounding: ``minmax``, ``percentile``, ``mse`` (range search) or ``gptq``
            (error-compensating, needs calibration data); ``auto`` = GPTQ at 2-4 bits for PTQ with
            calibration data, the MSE range otherwise (on MiniLM int8 it moves the reference pair's
            cosine 0.0045 less than min-max); QAT initialises LSQ from the chosen range.
        calibration_samples: samples taken from the calibration split.
        bias_correction: empirical bias correction (Nagel et al. 2019).
        fold_batchnorm: fold BatchNorm into the preceding convolution first.
        layer_bits: per-layer weight bit-widths, ``{name or "re:<regex>": bits}`` (mixed precision).
        gptq_block_size / gptq_damp: GPTQ's lazy-update block and Hessian dampening (fraction of the
            mean diagonal).
        epochs / max_steps / lr / optimizer / weight_decay / schedule / learn_scales: QAT training.
    """

    name: ClassVar[str] = "quantize"
    summary: ClassVar[str] = (
        "Uniform 1-8 bit quantization: PTQ (min-max / percentile / MSE / GPTQ, bias correction, BN folding) "
        "or QAT (LSQ); static or dynamic int8 activations; ONNX QDQ deployment and packed artifacts."
    )

    bits: int = 8
    granularity: Literal["per_tensor", "per_channel", "per_group"] = "per_channel"
    axis: int = 0
    group_size: int = 128
    symmetric: bool = True
    activations: bool = True
    activation_mode: Literal["auto", "static", "dynamic"] = "auto"
    activation_bits: int = 8
    activation_symmetric: bool = False
    dynamic_granularity: Literal["per_token", "per_tensor"] = "per_tensor"
    outlier_channels: int = 8
    quantize_single_channel_convs: bool = False
    quantize_residual_outputs: bool = True
    observer: Literal["minmax", "moving_average", "percentile", "mse"] = "minmax"
    percentile: float = 99.99
    mode: Literal["ptq", "qat"] = "ptq"
    method: Literal["auto", "minmax", "percentile", "mse", "gptq"] = "auto"
    calibration_samples: int = 512
    bias_correction: bool = False
    fold_batchnorm: bool = True
    layer_bits: dict[str, int] = dataclasses.field(default_factory=dict)
    gptq_block_size: int = 128
    gptq_damp: float = 0.01
    epochs: int = 1
    max_steps: int | None = None
    lr: float = 1e-4
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    weight_decay: float = 0.0
    schedule: Literal["constant", "cosine", "linear", "step"] = "cosine"
    learn_scales: bool = True

    def validate(self) -> None:
        self.check("bits", self.bits, low=1, high=8)
        self.check("activation_bits", self.activation_bits, low=1, high=8)
        self.check("group_size", self.group_size, low=1)
        self.check("outlier_channels", self.outlier_channels, low=0)
        self.check("calibration_samples", self.calibration_samples, low=1)
        self.check("percentile", self.percentile, low=50, high=100, low_inclusive=False)
        self.check("gptq_block_size", self.gptq_block_size, low=1)
        self.check("gptq_damp", self.gptq_damp, low=0, low_inclusive=False)
        self.check("epochs", self.epochs, low=0)
        if self.max_steps is not None:
            self.check("max_steps", self.max_steps, low=1)
        self.check("lr", self.lr, low=0, low_inclusive=False)
        self.check("weight_decay", self.weight_decay, low=0)
        if self.activations and self.activation_mode == "dynamic" and (self.activation_bits != 8 or self.activation_symmetric):
            raise ConfigError(
                "Quantize.activation_mode='dynamic' quantizes inputs to 8-bit asymmetric (ONNX DynamicQuantizeLinear); "
                f"activation_bits={self.activation_bits}, activation_symmetric={self.activation_symmetric} cannot be honoured."
            )
        if self.mode == "ptq" and self.method == "gptq" and self.bits == 1:
            raise ConfigError("Quantize.method='gptq' needs bits >= 2 (1-bit weights use the binary quantizer).")
        for pattern, bits in self.layer_bits.items():
            if not isinstance(pattern, str) or not pattern:
                raise ConfigError(f"Quantize.layer_bits keys must be layer names or 're:' patterns, got {pattern!r}.")
            if pattern.startswith("re:"):
                try:
                    re.compile(pattern[3:])
                except re.error as exc:
                    raise ConfigError(f"Quantize.layer_bits: bad regex {pattern!r}: {exc}.") from None
            if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
                raise ConfigError(f"Quantize.layer_bits[{pattern!r}]={bits!r} is out of range [1, 8].")

    # -- derived settings --------------------------------------------------------------------
    def weight_spec(self) -> WeightSpec:
        if self.granularity == "per_tensor":
            g = Granularity.per_tensor()
        elif self.granularity == "per_channel":
            g = Granularity.per_channel(self.axis)
        else:
            g = Granularity.per_group(self.group_size, self.axis)
        return WeightSpec(self.bits, self.symmetric, g)

    def activation_spec(self, model: nn.Module) -> ActivationSpec | None:
        if not self.activations:
            return None
        mode = self.activation_mode
        if mode == "auto":
            mode = "dynamic" if transformer_like(model) else "static"
        if mode == "dynamic":
            return ActivationSpec("dynamic", 8, False, self.dynamic_granularity)
        return ActivationSpec("static", self.activation_bits, self.activation_symmetric)

    def weight_method(self, *, has_data: bool) -> str:
        if self.method != "auto":
            return self.method
        if self.mode == "ptq" and 1 < self.bits <= 4 and has_data:
            return "gptq"
        return "mse"


Uniform = Quantize
"""The design guide's name for :class:`Quantize` (``ts.quantization.Uniform(bits=8)``)."""


def transformer_like(model: nn.Module) -> bool:
    """True for models built around attention (dynamic activation quantization suits them best)."""
    for module in model.modules():
        if isinstance(module, nn.MultiheadAttention):
            return True
        name = type(module).__name__
        if name.endswith("Attention") or name.endswith("SelfAttention"):
            return True
        if any(k.__name__ == "PreTrainedModel" for k in type(module).__mro__):
            return True
    return False


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _fold(model: nn.Module, example: Any) -> tuple[nn.Module, list[list[str]], str | None]:
    """Fold BatchNorm in place; returns the model, the folded pairs, and a note when folding failed."""
    from torchslim.graph import fold_batchnorm

    before = len(getattr(model, "torchslim_plan", []) or [])
    try:
        model = fold_batchnorm(model, inplace=True)
    except ModelError as exc:
        if example is None:
            return model, [], f"BatchNorm folding skipped: {exc}"
        try:
            model = fold_batchnorm(model, example, inplace=True)
        except Exception as exc2:  # noqa: BLE001
            return model, [], f"BatchNorm folding skipped: {type(exc2).__name__}: {exc2}"
    plan = list(getattr(model, "torchslim_plan", []) or [])
    pairs = [p for e in plan[before:] if e.get("kind") == "fold_batchnorm" for p in e.get("pairs", [])]
    return model, pairs, None


@TECHNIQUES.handles(Quantize)
def quantize_handler(model: nn.Module, config: Quantize, *, targets: Targets | None, context: Context) -> StepOutcome:
    """Quantize `model` (a copy of it) as `config` says; see the module docstring."""
    weight_spec = config.weight_spec()
    act_spec = config.activation_spec(model)
    calibration = context.data.calibration if context.data is not None else None
    method = config.weight_method(has_data=calibration is not None)

    # ---- everything that can fail on bad input, before any work --------------------------------
    split = config.outlier_channels if config.mode == "ptq" else 0
    preview, kept_float = plan_layers(model, targets=targets, weight_spec=weight_spec, act_spec=act_spec, method=method,
                                      layer_bits=config.layer_bits, outlier_channels=split,
                                      single_channel_convs=config.quantize_single_channel_convs)
    if not preview:
        why = "; ".join(f"{name}: {reason}" for name, reason in list(kept_float.items())[:3])
        raise TargetError(
            "quantize: none of the selected modules can be quantized (only Linear and Conv layers can); "
            "check the step's targets." + (f" Kept float: {why}." if why else "")
        )
    needs_data = (
        (act_spec is not None and act_spec.mode == "static") or method == "gptq" or config.bias_correction
        or config.mode == "qat"
    )
    batches = None
    if needs_data or calibration is not None:
        if calibration is None:
            raise DataError(
                "quantize needs calibration data for "
                + ("static activation quantization" if act_spec is not None and act_spec.mode == "static"
                   else "GPTQ" if method == "gptq" else "bias correction" if config.bias_correction else "QAT")
                + ", but none was given (context.data.calibration)."
            )
        batches = take_calibration(calibration, config.calibration_samples)
        check_against_example(batches, context.example_input)
        check_model_runs(model, batches)
    train_loader = None
    if config.mode == "qat":
        train_loader = context.require_data("train", technique="quantize (mode=qat)")

    # ---- work on a copy ---------------------------------------------------------------------------
    work = copy.deepcopy(model)
    work.eval()
    skipped: dict[str, str] = {}
    info: dict[str, Any] = {"mode": config.mode, "method": method,
                            "activation_mode": act_spec.mode if act_spec else "float"}
    if config.fold_batchnorm and _has_batchnorm(work):
        example = context.example_input if context.example_input is not None else (batches[0] if batches else None)
        work, pairs, note = _fold(work, example)
        info["folded_batchnorm"] = pairs
        if note:
            info["notes"] = [note]
        for conv, bn in pairs:
            skipped[bn] = f"BatchNorm folded into {conv}"
    choices, float_layers = plan_layers(work, targets=targets, weight_spec=weight_spec, act_spec=act_spec,
                                        method=method, layer_bits=config.layer_bits, gptq_ok=_gptq_ok,
                                        outlier_channels=split if batches is not None else 0,
                                        single_channel_convs=config.quantize_single_channel_convs)
    if split and batches is None and any(c.split_outliers for c in preview):
        info.setdefault("notes", []).append(
            "outlier channel splitting skipped: it needs calibration data to find the outlier channels")
    for name, reason in float_layers.items():
        skipped.setdefault(name, reason)
    if config.mode == "ptq" and config.quantize_residual_outputs and act_spec is not None and act_spec.mode == "static":
        residual = unquantized_outputs(work, choices)
        if residual is None:
            info.setdefault("notes", []).append(
                "residual outputs not quantized: torch.fx cannot trace this model, so layers feeding an Add may run "
                "as float convolutions in onnxruntime")
        else:
            for choice in choices:
                choice.quantize_output = choice.name in residual
            if residual:
                info["int8_outputs"] = sorted(residual)
    if batches is not None:
        info["calibration_samples"] = sum(_count(b) for b in batches)

    if config.mode == "ptq":
        work, originals, float_outputs = quantize_layers(
            work, choices, batches, observer=config.observer, percentile=config.percentile,
            bias_correction=config.bias_correction, gptq_block_size=config.gptq_block_size, gptq_damp=config.gptq_damp,
        )
        label = None
    else:
        work, originals, float_outputs, qat_info = _run_qat(work, choices, batches, train_loader, config, context)
        info["qat"] = qat_info

        def label(choice: LayerChoice) -> str:
            return f"lsq-qat (init {choice.method})"

    rows, report_info = report_layers(work, choices, originals, batches, float_outputs, method_label=label)
    info.update(report_info)
    append_plan(work, plan_entry(work, [c.name for c in choices]))
    return StepOutcome(model=work, layers=rows, skipped=skipped, info=info)


def _gptq_ok(module: nn.Module) -> bool:
    from torchslim.quantization.gptq import gptq_supported

    return gptq_supported(module)


def _count(batch: Any) -> int:
    from torchslim.quantization.calibration import batch_size_of

    return batch_size_of(batch)


def _run_qat(work: nn.Module, choices: list[LayerChoice], batches: Any, train_loader: Any, config: Quantize,
             context: Context) -> tuple[nn.Module, dict[str, nn.Module], Any, dict[str, Any]]:
    from torchslim.quantization.qat import convert_qat, prepare_qat, run_training
    from torchslim.train import TrainConfig

    stats, float_outputs = collect_stats(work, choices, batches, observer=config.observer, percentile=config.percentile)
    originals = prepare_qat(work, choices, stats, percentile=config.percentile, learn_scales=config.learn_scales)
    train_config = TrainConfig(epochs=config.epochs, max_steps=config.max_steps, lr=config.lr, optimizer=config.optimizer,
                               weight_decay=config.weight_decay, schedule=config.schedule)
    result = run_training(work, train_loader, config=train_config, seed=context.seed, run_dir=context.run_dir,
                          quiet=context.quiet)
    convert_qat(work)
    work.eval()
    qat_info: dict[str, Any] = {"epochs": config.epochs, "lr": config.lr}
    for key in ("steps", "final_loss", "seconds"):
        value = getattr(result, key, None)
        if isinstance(value, (int, float)):
            qat_info[key] = value
    return work, originals, float_outputs, qat_info


def replay_quantize(model: nn.Module, entry: dict[str, Any]) -> nn.Module:
    """Plan replay of kind ``quantize``: rebuild each recorded layer as an empty quantized layer."""
    layers = entry.get("layers")
    if not isinstance(layers, dict):
        raise ModelError("quantize plan entry: 'layers' must be a mapping of layer name to layout.")
    for name, layout in layers.items():
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise ModelError(f"quantize plan entry: the model has no layer {name!r}.") from None
        set_module(model, name, empty_quantized(module, layout))
    return model


def register_plan_replays() -> None:
    from torchslim.io.artifact import PLAN_REPLAYS, register_plan_replay

    if PLAN_KIND not in PLAN_REPLAYS:
        register_plan_replay(PLAN_KIND)(replay_quantize)
