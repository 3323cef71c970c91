"""The ``binarize`` and ``ternarize`` techniques: binary / ternary weights trained with the
straight-through estimator, first and last layers kept at 8 bits.

One handler serves both (:func:`binary_weights_handler`):

1. choose the layers (Linear, Conv, Embedding among the step's targets; :func:`plan_layers`) and
   the model's first layer and head, which keep ``edge_bits``-bit uniform weights by default;
2. replace the others (on a copy) by ``FakeQuant<Class>`` layers whose weight passes through a
   binary (XNOR-Net) or ternary (TWN / TTQ) fake quantizer (:mod:`~torchslim.quantization.binary_layer`);
3. fine-tune through :func:`torchslim.train.train_in_context` (the one training loop) with
   :class:`~torchslim.quantization.binary_layer.BinaryTrainHook`;
4. convert every layer to its stored form (``Quantized<Class>``: codes packed 8 / 4 per byte)
   and the kept edge layers to per-channel 8-bit, and record a ``binary_weights`` plan entry,
   whose replay rebuilds the layers when an artifact is loaded.

The formulas and citations are in :mod:`~torchslim.quantization.binary`.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from torchslim.core.context import Context
from torchslim.core.errors import ModelError, TargetError
from torchslim.core.plans import append_plan_entry, register_plan_replay
from torchslim.core.targets import Targets, find_head
from torchslim.core.technique import TECHNIQUES, StepOutcome
from torchslim.quantization.binary import BinaryLevels, TernaryLevels
from torchslim.quantization.binary_activation import (
    BINARY_INPUT_KEY,
    SignActivation,
    add_binary_input,
    collect_inputs,
    input_channels,
    take_binarizer,
)
from torchslim.quantization.binary_config import Binarize, BinaryWeightsConfig, Ternarize
from torchslim.quantization.binary_layer import (
    TTQ_LAYOUT_KEY,
    BinaryTrainHook,
    SignWeightQuantizer,
    TernaryWeightQuantizer,
    TTQMixin,
    WeightQuantizerModule,
    binary_fake_quant_module,
    convert_binary,
    make_ttq,
)
from torchslim.quantization.build import empty_quantized, quantizable, quantize_module
from torchslim.quantization.calibration import call_model, eval_mode, output_tensor, take_calibration
from torchslim.quantization.functional import Granularity
from torchslim.quantization.levels import UniformLevels
from torchslim.quantization.plan import LayerChoice, plan_layers
from torchslim.quantization.ptq import set_module
from torchslim.quantization.quantized import QuantizedMixin
from torchslim.quantization.quantizer import WeightQuantizer
from torchslim.quantization.ranges import MinMaxRange
from torchslim.quantization.report import report_layers
from torchslim.quantization.specs import WeightSpec
from torchslim.train import train_in_context

PLAN_KIND = "binary_weights"


def _low_spec(config: BinaryWeightsConfig) -> WeightSpec:
    g = config.weight_granularity()
    if isinstance(config, Ternarize):
        return WeightSpec(2, True, g, TernaryLevels.name)
    return WeightSpec(1, True, g, BinaryLevels.name)


def _method(config: BinaryWeightsConfig) -> str:
    if isinstance(config, Ternarize):
        return "ttq" if config.trained_scales else "twn"
    return "xnor"


def edge_layers(model: nn.Module, *, keep_first: bool, keep_last: bool) -> set[str]:
    """The names of the model's first quantizable layer and of its head (the layers that keep 8 bits)."""
    edges: set[str] = set()
    if keep_first:
        first = next((n for n, m in model.named_modules() if n and quantizable(m) is None), None)
        if first is not None:
            edges.add(first)
    if keep_last:
        edges.update(find_head(model))
    return edges


def plan_binary(
    model: nn.Module, config: BinaryWeightsConfig, targets: Targets | None
) -> tuple[list[LayerChoice], list[LayerChoice], dict[str, str]]:
    """``(binary or ternary layers, kept edge layers, {name: why it stays float})``; checks every
    selected weight (finite, has the granularity's axis) before any work."""
    choices, skipped = plan_layers(
        model, targets=targets, weight_spec=_low_spec(config), act_spec=None, method=_method(config)
    )
    edges = edge_layers(model, keep_first=config.keep_first, keep_last=config.keep_last)
    edge_spec = WeightSpec(config.edge_bits, True, Granularity.per_channel(0), UniformLevels.name)
    low = [c for c in choices if c.name not in edges]
    kept = [dataclasses.replace(c, weight_spec=edge_spec, method="minmax") for c in choices if c.name in edges]
    if not low:
        why = "; ".join(f"{n}: {r}" for n, r in list(skipped.items())[:3])
        raise TargetError(
            f"{config.name}: no layer left to make {_low_spec(config).levels}: the selected layers are "
            f"{[c.name for c in choices]} and the first / last layers keep {config.edge_bits} bits "
            "(keep_first / keep_last); check the step's targets." + (f" Kept float: {why}." if why else "")
        )
    return low, kept, skipped


def _weight_quantizer(module: nn.Module, config: BinaryWeightsConfig, g: Granularity) -> WeightQuantizerModule:
    if isinstance(config, Ternarize):
        weight = module.weight
        assert isinstance(weight, Tensor)  # plan_layers checked it
        return TernaryWeightQuantizer(
            weight, granularity=g, threshold=config.threshold, clip=config.clip, trained_scales=config.trained_scales
        )
    return SignWeightQuantizer(granularity=g, clip=config.clip)


def _train(work: nn.Module, config: BinaryWeightsConfig, context: Context, loader: Any) -> dict[str, Any]:
    home = next((p.device for p in work.parameters()), None)
    result = train_in_context(
        work, config=config.train, context=context, technique=config.name, hooks=[BinaryTrainHook(work)], loader=loader
    )
    if home is not None:
        work.to(home)  # trained on context.device; the report runs where the model came from
    facts: dict[str, Any] = {"epochs": config.train.epochs, "lr": config.train.lr}
    for key in ("steps", "final_loss", "seconds"):
        value = getattr(result, key, None)
        if isinstance(value, (int, float)):
            facts[key] = value
    return facts


def _quantize_edge(work: nn.Module, choice: LayerChoice) -> None:
    module = work.get_submodule(choice.name)
    weight = module.weight
    assert isinstance(weight, Tensor)
    quantizer = WeightQuantizer.for_spec(choice.weight_spec, range=MinMaxRange())
    codes, scale, zero_point = quantizer.quantize(weight.detach().float())
    set_module(
        work,
        choice.name,
        quantize_module(module, weight_spec=choice.weight_spec, codes=codes, scale=scale, zero_point=zero_point),
    )


def _report_batches(model: nn.Module, config: BinaryWeightsConfig, context: Context) -> tuple[list[Any], list[Tensor]]:
    calibration = context.data.calibration if context.data is not None else None
    if calibration is None or config.report_samples == 0:
        return [], []
    batches = take_calibration(calibration, config.report_samples)
    return batches, _outputs(model, batches)


def _outputs(model: nn.Module, batches: list[Any]) -> list[Tensor]:
    with eval_mode(model), torch.no_grad():
        return [output_tensor(call_model(model, b)).detach().float() for b in batches]


def _input_binarizers(
    work: nn.Module, low: list[LayerChoice], config: BinaryWeightsConfig, context: Context, batches: list[Any]
) -> dict[str, SignActivation]:
    """Per low-bit layer, a sign activation started from its float inputs (``activations: binary``)."""
    if config.activations != "binary":
        return {}
    if not batches:
        train = context.require_data("train", technique=f"{config.name} (activations=binary)")
        batches = take_calibration(train, config.report_samples, what="train")
    names = [c.name for c in low]
    with eval_mode(work):
        seen = collect_inputs(work, names, batches, call_model)
    binarizers = {}
    for choice in low:
        channels, dim = input_channels(choice.module)
        binarizers[choice.name] = SignActivation(channels, dim=dim)
        binarizers[choice.name].init_from(seen[choice.name])
    return binarizers


def _prepare(
    work: nn.Module, low: list[LayerChoice], config: BinaryWeightsConfig, binarizers: dict[str, SignActivation]
) -> None:
    """Swap every low-bit layer of `work` for its fake-quantized training form (with binary inputs
    where `binarizers` has one)."""
    g = config.weight_granularity()
    for choice in low:
        fake: nn.Module = binary_fake_quant_module(
            choice.module, choice.weight_spec, _weight_quantizer(choice.module, config, g)
        )
        if choice.name in binarizers:
            fake = add_binary_input(fake, binarizers[choice.name])
        set_module(work, choice.name, fake)


def _convert(work: nn.Module, low: list[LayerChoice], kept: list[LayerChoice]) -> None:
    """Replace the trained layers of `work` by their stored forms (packed codes), the edge layers by 8-bit ones."""
    for choice in low:
        fake = work.get_submodule(choice.name)
        binarizer = take_binarizer(fake)
        layer: nn.Module = convert_binary(fake)
        set_module(work, choice.name, layer if binarizer is None else add_binary_input(layer, binarizer))
    for choice in kept:
        _quantize_edge(work, choice)


def _notes(low: list[LayerChoice], config: BinaryWeightsConfig) -> list[str]:
    masked = [c.name for c in low if parametrize.is_parametrized(c.module, "weight")]
    if masked and isinstance(config, Binarize):
        return [f"binary weights have no zero: the pruning masks of {masked} are not kept (ternarize keeps them)"]
    return []


def _report(
    work: nn.Module, model: nn.Module, choices: list[LayerChoice], batches: list[Any], float_outputs: list[Tensor]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    originals = {c.name: model.get_submodule(c.name) for c in choices}
    rows, agreement = report_layers(work, choices, originals, batches or None, float_outputs or None)
    for row in rows:  # a TTQ layer also stores its negative scales
        layer = work.get_submodule(row["layer"])
        if isinstance(layer, TTQMixin):
            row["weight_bytes"] += 4 * layer.weight_scale_negative.numel()
    return rows, agreement


@TECHNIQUES.handles(Binarize)
@TECHNIQUES.handles(Ternarize)
def binary_weights_handler(
    model: nn.Module, config: BinaryWeightsConfig, *, targets: Targets | None, context: Context
) -> StepOutcome:
    """Binarize or ternarize `model` (a copy of it) as `config` says; see the module docstring."""
    work = copy.deepcopy(model)
    low, kept, skipped = plan_binary(work, config, targets)  # every check before any work
    trains = config.train.epochs > 0 and config.train.max_steps != 0
    loader = context.require_data("train", technique=config.name) if trains else None
    batches, float_outputs = _report_batches(model, config, context)
    binarizers = _input_binarizers(work, low, config, context, batches)

    _prepare(work, low, config, binarizers)
    info: dict[str, Any] = {"levels": _low_spec(config).levels, "method": _method(config)}
    if binarizers:
        info["binary_inputs"] = sorted(binarizers)
    notes = _notes(low, config)
    if notes:
        info["notes"] = notes
    if trains:
        info["train"] = _train(work, config, context, loader)
    work.eval()
    _convert(work, low, kept)
    info["kept_edge_layers"] = {c.name: c.weight_spec.bits for c in kept}
    order = {name: i for i, (name, _) in enumerate(work.named_modules())}
    choices = sorted(low + kept, key=lambda c: order.get(c.name, len(order)))
    rows, agreement = _report(work, model, choices, batches, float_outputs)
    info.update(agreement)
    append_plan_entry(work, {"kind": PLAN_KIND, "layers": {c.name: _stored(work, c.name).layout() for c in choices}})
    return StepOutcome(model=work, layers=rows, skipped=skipped, info=info)


def _stored(model: nn.Module, name: str) -> QuantizedMixin:
    layer = model.get_submodule(name)
    assert isinstance(layer, QuantizedMixin)
    return layer


@register_plan_replay(PLAN_KIND)
def replay_binary_weights(model: nn.Module, entry: dict[str, Any]) -> nn.Module:
    """Plan replay of kind ``binary_weights``: rebuild each recorded layer as an empty quantized layer
    (a TTQ layer with its second scale); the artifact then fills them."""
    layers = entry.get("layers")
    if not isinstance(layers, dict):
        raise ModelError(f"{PLAN_KIND} plan entry: 'layers' must be a mapping of layer name to layout.")
    for name, layout in layers.items():
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise ModelError(f"{PLAN_KIND} plan entry: the model has no layer {name!r}.") from None
        layer = empty_quantized(module, layout)
        if layout.get(TTQ_LAYOUT_KEY):
            layer = make_ttq(layer, torch.ones_like(layer.weight_scale))
        binary_input = layout.get(BINARY_INPUT_KEY)
        if binary_input:
            add_binary_input(layer, SignActivation(int(binary_input["channels"]), dim=int(binary_input["dim"])))
        set_module(model, name, layer)
    return model


__all__ = [
    "PLAN_KIND",
    "Binarize",
    "Ternarize",
    "binary_weights_handler",
    "edge_layers",
    "plan_binary",
    "replay_binary_weights",
]
