"""Which layers a ``quantize`` step changes, and how: one :class:`LayerChoice` per layer.

:func:`plan_layers` decides per layer the bit-width, granularity, input quantization and weight
range estimator, and says why a selected layer stays float. It checks, before any work, that every
layer's weight has the granularity's axis and only finite values, and that every ``layer_bits``
pattern selects a layer.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from torchslim.core.errors import ConfigError, ModelError, did_you_mean
from torchslim.core.targets import Targets
from torchslim.quantization.build import quantizable
from torchslim.quantization.specs import ActivationSpec, WeightSpec


@dataclasses.dataclass
class LayerChoice:
    """What happens to one layer."""

    name: str
    module: nn.Module
    weight_spec: WeightSpec
    act_spec: ActivationSpec | None
    method: str  # the weight range estimator: minmax | percentile | mse | gptq
    split_outliers: int = 0  # input channels to split (outlier channel splitting), 0 = none
    quantize_output: bool = False  # static int8 output (its output reaches no quantized layer's input)
    output_clamp: tuple[float, float] | None = None  # the clamp its output feeds alone (see int8_graph.clamp_of)


SINGLE_CHANNEL_REASON = (
    "one input channel: kept float (onnxruntime's int8 convolution packs input channels in fours, and this "
    "layer's cost is its outputs, which int8 does not make cheaper; quantize_single_channel_convs=true quantizes it)"
)


def unquantized_outputs(model: nn.Module, choices: list[LayerChoice], example_input: Any = None) -> set[str] | None:
    """Names of static-input ``Conv1d`` / ``Conv2d`` layers whose output reaches something other than a
    static-input quantized layer (a residual ``Add``, a ``cat``, the model output).

    An int8 runtime cannot run these as integer kernels unless their output is quantized too
    (onnxruntime fuses ``DQ -> Conv -> Q`` only). Only ReLU, ReLU6 / clamp, zero padding,
    max-pooling, flatten, reshape-like calls and identity / dropout are followed (they commute with
    quantization; see :func:`torchslim.graph.flow.outputs_reaching_others`). When ``torch.fx``
    cannot trace `model`, the same walk runs over the autograd graph of one forward pass on
    `example_input`; None when there is no example either.
    """
    from torchslim.graph.flow import outputs_reaching_others, outputs_reaching_others_autograd

    static = {c.name for c in choices if c.act_spec is not None and c.act_spec.mode == "static"}
    convs = {c.name for c in choices if c.name in static and isinstance(c.module, (nn.Conv1d, nn.Conv2d))}
    if not convs:
        return set()
    found = outputs_reaching_others(model, convs, static)
    if found is None and example_input is not None:
        found = outputs_reaching_others_autograd(model, example_input, convs, static)
    return found


def name_matches(pattern: str, name: str) -> bool:
    """Targets' name rule: exact or dotted prefix, or ``re:<regex>`` full match."""
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], name) is not None
    return pattern == name or name.startswith(pattern + ".")


def _layer_method(module: nn.Module, method: str, spec: WeightSpec, gptq_ok: Callable[[nn.Module], bool] | None) -> str:
    """GPTQ falls back to round-to-nearest (MSE below 8 bits, else min-max) where it cannot run: a
    layer it does not support, a lookup table, or a pruned (masked) weight, whose zeros GPTQ's error
    compensation would move."""
    if method != "gptq":
        return method
    if (
        (gptq_ok is not None and not gptq_ok(module))
        or isinstance(module, nn.Embedding)
        or torch.nn.utils.parametrize.is_parametrized(module, "weight")
    ):
        return "mse" if spec.bits < 8 else "minmax"
    return method


def _float_reason(module: nn.Module, act_spec: ActivationSpec | None, single_channel_convs: bool) -> str | None:
    reason = quantizable(module)
    if reason is not None:
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            reason = "BatchNorm is not quantized (fold it into the convolution before it: fold_batchnorm=true)"
        return reason
    if (
        not single_channel_convs
        and act_spec is not None
        and act_spec.mode == "static"
        and isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d))
        and module.groups == 1
        and module.in_channels == 1
    ):
        return SINGLE_CHANNEL_REASON
    return None


def plan_layers(
    model: nn.Module,
    *,
    targets: Targets | None,
    weight_spec: WeightSpec,
    act_spec: ActivationSpec | None,
    method: str,
    layer_bits: dict[str, int] | None = None,
    gptq_ok: Callable[[nn.Module], bool] | None = None,
    outlier_channels: int = 0,
    single_channel_convs: bool = True,
    layer_act: Callable[[nn.Module, ActivationSpec], ActivationSpec] | None = None,
) -> tuple[list[LayerChoice], dict[str, str]]:
    # long: eleven keyword-only options, one a line, and a docstring naming each; the body is ~35 lines
    """The layers to quantize (in model order) and ``{name: reason}`` for selected layers that stay float.

    With ``single_channel_convs=False`` and static input quantization, convolutions with one input
    channel (``groups == 1``) stay float (see ``Quantize.quantize_single_channel_convs``).
    `layer_act` maps a layer and `act_spec` to that layer's activation spec (``auto``: by layer type).
    """
    choices: list[LayerChoice] = []
    skipped: dict[str, str] = {}
    layer_bits = dict(layer_bits or {})
    used = {p: False for p in layer_bits}
    for name, module in (targets or Targets()).resolve(model):
        if any(name.startswith(c.name + ".") for c in choices):
            continue  # a child of a layer already chosen (e.g. a padding module)
        layer_spec = act_spec if layer_act is None or act_spec is None else layer_act(module, act_spec)
        reason = _float_reason(module, layer_spec, single_channel_convs)
        if reason is not None:
            skipped[name] = reason
            continue
        spec = weight_spec
        for pattern, bits in layer_bits.items():
            if name_matches(pattern, name):
                spec = dataclasses.replace(spec, bits=int(bits))
                used[pattern] = True
                break
        weight = module.weight
        assert isinstance(weight, torch.Tensor)
        spec.granularity.check(weight.shape, what=f"layer {name!r} weight")
        if not torch.isfinite(weight.detach()).all():
            raise ModelError(f"layer {name!r}: the weight contains NaN or inf; refusing to quantize it.")
        layer_method = _layer_method(module, method, spec, gptq_ok)
        act = None if isinstance(module, nn.Embedding) else layer_spec  # a lookup has no activations to quantize
        split = 0
        if (
            outlier_channels > 0
            and isinstance(module, nn.Linear)
            and act is not None
            and act.mode == "dynamic"
            and act.granularity == "per_tensor"
            and layer_method != "gptq"
            and spec.granularity.per_output_channel(weight.shape)
        ):
            split = min(outlier_channels, module.in_features // 32)  # meant for wide layers: at most 1 in 32
        choices.append(LayerChoice(name, module, spec, act, layer_method, split))
    for pattern, hit in used.items():
        if not hit:
            raise ConfigError(
                f"layer_bits pattern {pattern!r} matches none of the layers being quantized."
                + did_you_mean(pattern, [c.name for c in choices])
            )
    return choices, skipped


__all__ = ["LayerChoice", "SINGLE_CHANNEL_REASON", "name_matches", "plan_layers", "unquantized_outputs"]
