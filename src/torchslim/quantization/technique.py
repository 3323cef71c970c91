"""The ``quantize`` recipe technique: the handler of :class:`~torchslim.quantization.config.Quantize`
and the ``quantize`` plan replay.

The handler checks everything it can before any work (bit-widths, targets, the per-channel axis
of every layer, NaN weights, calibration data: present, non-empty, finite, of the model's shape),
then quantizes a copy of the model, so a failure never leaves a half-quantized model behind.
Importing this module registers both (the replay in :mod:`torchslim.core.plans`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from torchslim.core.context import Context
from torchslim.core.errors import DataError, ModelError, TargetError
from torchslim.core.plans import append_plan_entry, model_plan, register_plan_replay
from torchslim.core.targets import Targets
from torchslim.core.technique import TECHNIQUES, StepOutcome
from torchslim.quantization.build import empty_quantized
from torchslim.quantization.calibration import batch_size_of, check_against_example, check_model_runs, take_calibration
from torchslim.quantization.config import Quantize, Uniform
from torchslim.quantization.conv1d import conv1d_as_linear, is_conv1d, replace_conv1d, tied_groups
from torchslim.quantization.gptq import gptq_supported
from torchslim.quantization.int8_graph import PointPlan, install_point, observe_points, plan_points
from torchslim.quantization.observers import make_observer
from torchslim.quantization.plan import LayerChoice, plan_layers, unquantized_outputs
from torchslim.quantization.ptq import quantize_layers, set_module, share_input_qparams
from torchslim.quantization.report import plan_entry, report_layers
from torchslim.quantization.specs import ActivationSpec

PLAN_KIND = "quantize"


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _fold(model: nn.Module, example: Any) -> tuple[nn.Module, list[list[str]], str | None]:
    """Fold BatchNorm in place; returns the model, the folded pairs, and a note when folding failed."""
    from torchslim.graph import fold_batchnorm

    before = len(model_plan(model))
    try:
        model = fold_batchnorm(model, inplace=True)
    except ModelError as exc:
        if example is None:
            return model, [], f"BatchNorm folding skipped: {exc}"
        try:
            model = fold_batchnorm(model, example, inplace=True)
        except Exception as exc2:  # noqa: BLE001
            return model, [], f"BatchNorm folding skipped: {type(exc2).__name__}: {exc2}"
    pairs = [p for e in model_plan(model)[before:] if e.get("kind") == "fold_batchnorm" for p in e.get("pairs", [])]
    return model, pairs, None


def _calibration(model: nn.Module, config: Quantize, context: Context, needs: str | None) -> list[Any] | None:
    """The calibration batches (checked), or None when none are given and `needs` is None."""
    calibration = context.data.calibration if context.data is not None else None
    if calibration is None:
        if needs is not None:
            raise DataError(
                f"quantize needs calibration data for {needs}, but none was given (context.data.calibration)."
            )
        return None
    batches = take_calibration(calibration, config.calibration_samples)
    check_against_example(batches, context.example_input)
    check_model_runs(model, batches)
    return batches


def _needs_data(config: Quantize, act_spec: ActivationSpec | None, method: str) -> str | None:
    if act_spec is not None and act_spec.mode == "static":
        return "static activation quantization"
    if method == "gptq":
        return "GPTQ"
    if config.bias_correction is True:
        return "bias correction"
    return "QAT" if config.mode == "qat" else None


def _plan(
    model: nn.Module,
    config: Quantize,
    targets: Targets | None,
    act_spec: ActivationSpec | None,
    method: str,
    *,
    split: int,
    has_data: bool,
    gptq_ok: Callable[[nn.Module], bool] | None = None,
) -> tuple[list[LayerChoice], dict[str, str]]:
    acts = config.activations

    def layer_act(module: nn.Module, spec: ActivationSpec) -> ActivationSpec:
        return spec if acts is None else acts.layer_spec(module, spec, has_data=has_data)

    choices, skipped = plan_layers(
        model,
        targets=targets,
        weight_spec=config.weight_spec(),
        act_spec=act_spec,
        method=method,
        layer_bits=config.weights.layer_bits,
        gptq_ok=gptq_ok,
        outlier_channels=split,
        single_channel_convs=config.quantize_single_channel_convs,
        layer_act=layer_act,
    )
    tied = {name: group for group in tied_groups([(c.name, c.module) for c in choices]) for name in group}
    for name, group in tied.items():
        others = ", ".join(n for n in group if n != name)
        skipped[name] = f"weight tied with {others}: kept float, so the model keeps one copy of it (not two int8 ones)"
    return [c for c in choices if c.name not in tied], skipped


def _mark_residual_outputs(work: nn.Module, choices: list[LayerChoice], info: dict[str, Any], example: Any) -> None:
    residual = unquantized_outputs(work, choices, example)
    if residual is None:
        info.setdefault("notes", []).append(
            "residual outputs not quantized: torch.fx cannot trace this model and there is no example input, so "
            "layers feeding an Add may run as float convolutions in onnxruntime"
        )
        return
    for choice in choices:
        choice.quantize_output = choice.name in residual
    if residual:
        info["int8_outputs"] = sorted(residual)


def _plan_int8_graph(
    work: nn.Module, choices: list[LayerChoice], act_spec: ActivationSpec, info: dict[str, Any]
) -> PointPlan | None:
    """Place the integer graph's points (None: fx cannot trace, or the activations are not 8-bit
    asymmetric); mark the layers that still need their own int8 output."""
    if act_spec.bits != 8 or act_spec.symmetric:
        return None
    static = {c.name for c in choices if c.act_spec is not None and c.act_spec.mode == "static"}
    convs = {c.name for c in choices if c.name in static and isinstance(c.module, (nn.Conv1d, nn.Conv2d))}
    plan = plan_points(work, static, convs)
    if plan is None:
        return None
    for choice in choices:
        choice.quantize_output = choice.name in plan.output_layers
        choice.output_clamp = plan.output_clamps.get(choice.name)
    if plan.output_layers:
        info["int8_outputs"] = sorted(plan.output_layers)
    if plan.points:
        info["int8_points"] = dict(plan.points)
    if plan.skipped:
        info.setdefault("notes", []).append(
            "values kept float between int8 layers (no submodule outputs them): " + ", ".join(sorted(plan.skipped))
        )
    return plan


def _mark_outputs(
    work: nn.Module,
    choices: list[LayerChoice],
    act_spec: ActivationSpec | None,
    config: Quantize,
    info: dict[str, Any],
    example: Any,
) -> PointPlan | None:
    """Static PTQ: the integer graph's points, else int8 outputs on the residual branches only."""
    if act_spec is not None and not act_spec.static:  # auto: static convolutions in a dynamic model
        act_spec = next((c.act_spec for c in choices if c.act_spec is not None and c.act_spec.static), None)
    if config.mode != "ptq" or not config.quantize_residual_outputs or act_spec is None or act_spec.mode != "static":
        return None
    points = _plan_int8_graph(work, choices, act_spec, info) if config.integer_graph else None
    if points is None:
        _mark_residual_outputs(work, choices, info, example)
    return points


def _fold_step(work: nn.Module, example: Any, info: dict[str, Any], skipped: dict[str, str]) -> nn.Module:
    work, pairs, note = _fold(work, example)
    info["folded_batchnorm"] = pairs
    if note:
        info["notes"] = [note]
    for conv, bn in pairs:
        skipped[bn] = f"BatchNorm folded into {conv}"
    return work


def _run_ptq(
    work: nn.Module,
    choices: list[LayerChoice],
    batches: list[Any] | None,
    config: Quantize,
    points: PointPlan | None = None,
    *,
    bias_correction: bool = False,
) -> tuple[nn.Module, dict[str, nn.Module], list[Tensor] | None]:
    acts = config.activations
    observer = acts.observer if acts is not None else "minmax"
    percentile = acts.percentile if acts is not None else config.weights.percentile
    names = list(points.points) if points is not None and batches else []
    observers, handles = observe_points(
        work, names, lambda: make_observer(observer, bits=8, symmetric=False, percentile=percentile)
    )
    try:
        result = _quantize(work, choices, batches, config, bias_correction=bias_correction)
    finally:
        for handle in handles:
            handle.remove()
    if points is not None:
        for name, obs in observers.items():
            scale, zero_point = obs.qparams()
            install_point(work.get_submodule(name), scale, zero_point)
            for consumer in points.consumers.get(name, []):
                share_input_qparams(work.get_submodule(consumer), scale, zero_point)
    return result


def _quantize(
    work: nn.Module, choices: list[LayerChoice], batches: list[Any] | None, config: Quantize, *, bias_correction: bool
) -> tuple[nn.Module, dict[str, nn.Module], list[Tensor] | None]:
    acts = config.activations
    return quantize_layers(
        work,
        choices,
        batches,
        observer=acts.observer if acts is not None else "minmax",
        percentile=config.weights.percentile,
        activation_percentile=acts.percentile if acts is not None else None,
        bias_correction=bias_correction,
        gptq_block_size=config.weights.gptq_block_size,
        gptq_damp=config.weights.gptq_damp,
    )


def _note_modes(choices: list[LayerChoice], config: Quantize, info: dict[str, Any]) -> None:
    """Per-mode layer counts when the layers differ (``auto``), and a note for convolutions left
    dynamic (they run as float convolutions in onnxruntime) for want of calibration data."""
    modes: dict[str, int] = {}
    for choice in choices:
        key = choice.act_spec.mode if choice.act_spec is not None else "weight_only"
        modes[key] = modes.get(key, 0) + 1
    if len(modes) > 1:
        info["activation_modes"] = modes
    dynamic_convs = [
        c.name
        for c in choices
        if isinstance(c.module, nn.modules.conv._ConvNd) and c.act_spec and not c.act_spec.static
    ]
    if dynamic_convs and config.activations is not None and config.activations.mode == "auto":
        info.setdefault("notes", []).append(
            f"{len(dynamic_convs)} convolution(s) quantized dynamic, not static: static int8 (integer kernels in "
            "onnxruntime) needs calibration data (context.data.calibration); without it they run as float "
            "convolutions with int8 weights"
        )


@TECHNIQUES.handles(Quantize)
def quantize_handler(model: nn.Module, config: Quantize, *, targets: Targets | None, context: Context) -> StepOutcome:
    # long: the checks before any work, then the work in order on the copy; one sequence to read
    """Quantize `model` (a copy of it) as `config` says; see the module docstring."""
    act_spec = config.activation_spec(model)
    has_calibration = context.data is not None and context.data.calibration is not None
    method = config.weight_method(has_data=has_calibration)

    # ---- everything that can fail on bad input, before any work --------------------------------
    split = config.outlier_channels if config.mode == "ptq" else 0
    work = copy.deepcopy(model)  # Conv1D -> Linear on the copy first: the plan sees them as Linear layers
    converted = replace_conv1d(work)
    preview, kept_float = _plan(work, config, targets, act_spec, method, split=split, has_data=has_calibration)
    if not preview:
        why = "; ".join(f"{name}: {reason}" for name, reason in list(kept_float.items())[:3])
        raise TargetError(
            "quantize: none of the selected modules can be quantized (only Linear and Conv layers can); "
            "check the step's targets." + (f" Kept float: {why}." if why else "")
        )
    batches = _calibration(model, config, context, _needs_data(config, act_spec, method))
    train_loader = context.require_data("train", technique="quantize (mode=qat)") if config.mode == "qat" else None

    # ---- work on the copy ---------------------------------------------------------------------------
    work.eval()
    skipped: dict[str, str] = {}
    info: dict[str, Any] = {
        "mode": config.mode,
        "method": method,
        "activation_mode": act_spec.mode if act_spec else "float",
    }
    if converted:
        info["conv1d_as_linear"] = converted
    example = context.example_input if context.example_input is not None else (batches[0] if batches else None)
    if config.fold_batchnorm and _has_batchnorm(work):
        work = _fold_step(work, example, info, skipped)
    choices, float_layers = _plan(
        work,
        config,
        targets,
        act_spec,
        method,
        split=split if batches is not None else 0,
        has_data=batches is not None,
        gptq_ok=gptq_supported,
    )
    _note_modes(choices, config, info)
    if split and batches is None and any(c.split_outliers for c in preview):
        info.setdefault("notes", []).append(
            "outlier channel splitting skipped: it needs calibration data to find the outlier channels"
        )
    for name, reason in float_layers.items():
        skipped.setdefault(name, reason)
    points = _mark_outputs(work, choices, act_spec, config, info, example)
    if batches is not None:
        info["calibration_samples"] = sum(batch_size_of(b) for b in batches)

    label: Callable[[LayerChoice], str] | None = None
    if config.mode == "ptq":
        info["bias_correction"] = config.corrects_bias(method=method, has_data=batches is not None)
        work, originals, float_outputs = _run_ptq(
            work, choices, batches, config, points, bias_correction=info["bias_correction"]
        )
    else:
        from torchslim.quantization.qat import run_qat

        work, originals, float_outputs, info["qat"] = run_qat(work, choices, batches, train_loader, config, context)

        def label(choice: LayerChoice) -> str:
            return f"lsq-qat (init {choice.method})"

    rows, report_info = report_layers(work, choices, originals, batches, float_outputs, method_label=label)
    info.update(report_info)
    append_plan_entry(work, plan_entry(work, [c.name for c in choices]))
    return StepOutcome(model=work, layers=rows, skipped=skipped, info=info)


@register_plan_replay(PLAN_KIND)
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
        if is_conv1d(module) and layout.get("class") == "Linear":
            module = conv1d_as_linear(module)
        set_module(model, name, empty_quantized(module, layout))
    points = entry.get("activation_points", {})
    if not isinstance(points, dict):
        raise ModelError("quantize plan entry: 'activation_points' must be a mapping of module name to [scale, zp].")
    for name, (scale, zero_point) in points.items():
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise ModelError(f"quantize plan entry: the model has no module {name!r} (an int8 point).") from None
        install_point(module, float(scale), int(zero_point))
    return model


def register_plan_replays() -> None:
    """Kept for callers of the earlier API: the replay registers when this module is imported."""
    register_plan_replay(PLAN_KIND)(replay_quantize)


__all__ = ["PLAN_KIND", "Quantize", "Uniform", "quantize_handler", "register_plan_replays", "replay_quantize"]
