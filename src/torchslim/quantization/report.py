"""What a ``quantize`` step reports: per layer the bit-width, weight SQNR, output SQNR and bytes,
and for the whole model the output SQNR, top-1 agreement and cosine against the float outputs.

The output SQNR of a layer compares the quantized layer with its float original on the same input
(the quantized model's input to that layer), so errors do not accumulate in the per-layer number.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from torchslim.quantization.calibration import call_model, eval_mode, output_tensor
from torchslim.quantization.functional import sqnr_db
from torchslim.quantization.int8_graph import installed_points
from torchslim.quantization.packing import packed_nbytes
from torchslim.quantization.plan import LayerChoice
from torchslim.quantization.quantized import QuantizedMixin


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else (round(value, 3) if math.isfinite(value) else value)


def layer_weight_bytes(module: QuantizedMixin) -> int:
    """Bytes the layer's weight takes in an artifact: packed codes, float32 scales, int8 zero points."""
    spec = module.weight_spec
    n = module.stored_weight().numel()
    params = module.weight_scale.numel()
    zp_bytes = 0 if spec.symmetric or spec.bits == 1 else params
    return packed_nbytes(n, spec.bits) + 4 * params + zp_bytes


def _quantized(model: nn.Module, name: str) -> QuantizedMixin:
    module = model.get_submodule(name)
    assert isinstance(module, QuantizedMixin)
    return module


def _outputs_and_layer_noise(
    model: nn.Module, choices: list[LayerChoice], originals: dict[str, nn.Module], batches: list[Any] | None
) -> tuple[list[Tensor], dict[str, list[float]]]:
    """The quantized model's outputs on `batches` and ``[signal, noise]`` of every layer's output."""
    sums: dict[str, list[float]] = {c.name: [0.0, 0.0] for c in choices}
    q_outputs: list[Tensor] = []
    if not batches:
        return q_outputs, sums
    handles = []
    for choice in choices:

        def hook(
            module: nn.Module,
            args: tuple[Any, ...],
            output: Any,
            fmod: nn.Module = originals[choice.name],
            acc: list[float] = sums[choice.name],
        ) -> None:
            x = args[0] if args else None
            if not isinstance(x, Tensor) or not isinstance(output, Tensor):
                return
            ref = fmod(x).double()
            err = ref - output.double()
            acc[0] += float((ref * ref).sum())
            acc[1] += float((err * err).sum())

        handles.append(model.get_submodule(choice.name).register_forward_hook(hook))
    try:
        with eval_mode(model):
            for inputs in batches:
                q_outputs.append(output_tensor(call_model(model, inputs)).detach().float())
    finally:
        for h in handles:
            h.remove()
    return q_outputs, sums


def _model_agreement(float_outputs: list[Tensor], q_outputs: list[Tensor]) -> dict[str, Any]:
    ref = torch.cat([o.reshape(o.shape[0], -1) for o in float_outputs])
    got = torch.cat([o.reshape(o.shape[0], -1) for o in q_outputs])
    info: dict[str, Any] = {"output_sqnr_db": _finite(sqnr_db(ref, got))}
    info["output_cosine"] = round(
        float(torch.nn.functional.cosine_similarity(ref.double(), got.double(), dim=1).mean()), 6
    )
    unit_rows = bool(torch.allclose(ref.norm(dim=1), torch.ones(ref.shape[0]), atol=1e-3))
    if ref.dim() == 2 and ref.shape[1] > 1 and not unit_rows:  # logits, not normalised embeddings
        info["top1_agreement"] = round(float((ref.argmax(1) == got.argmax(1)).float().mean()), 6)
    info["report_samples"] = int(ref.shape[0])
    return info


def report_layers(
    model: nn.Module,
    choices: list[LayerChoice],
    originals: dict[str, nn.Module],
    batches: list[Any] | None,
    float_outputs: list[Tensor] | None,
    *,
    method_label: Callable[[LayerChoice], str] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-layer rows (bit-width, weight SQNR, output SQNR) and model-level agreement numbers."""
    q_outputs, sums = _outputs_and_layer_noise(model, choices, originals, batches)
    rows = []
    for choice in choices:
        qmod = _quantized(model, choice.name)
        w = originals[choice.name].weight
        assert isinstance(w, Tensor)
        w = w.detach().float()
        signal, noise = sums[choice.name]
        out_sqnr = None
        if batches:
            out_sqnr = math.inf if noise == 0 else (10 * math.log10(signal / noise) if signal > 0 else -math.inf)
        act = choice.act_spec
        rows.append(
            {
                "layer": choice.name,
                "type": type(originals[choice.name]).__name__,
                "weight_bits": choice.weight_spec.bits,
                "activation_bits": act.bits if act is not None else None,
                "activations": act.mode if act is not None else "float",
                "granularity": choice.weight_spec.granularity.kind,
                "group_size": choice.weight_spec.granularity.group_size,
                "method": method_label(choice) if method_label else choice.method,
                "params": int(w.numel()),
                "split_channels": int(qmod.layout()["split_channels"]),
                "weight_sqnr_db": _finite(sqnr_db(w, qmod.effective_weight())),
                "output_sqnr_db": _finite(out_sqnr) if out_sqnr is not None else None,
                "weight_bytes_float": int(w.numel() * 4),
                "weight_bytes": layer_weight_bytes(qmod),
            }
        )
    info = _model_agreement(float_outputs, q_outputs) if batches and float_outputs else {}
    return rows, info


def plan_entry(model: nn.Module, names: Iterable[str]) -> dict[str, Any]:
    """The ``quantize`` plan entry that rebuilds the quantized layers `names` and the int8 points
    (:mod:`~torchslim.quantization.int8_graph`) on load."""
    entry: dict[str, Any] = {"kind": "quantize", "layers": {n: _quantized(model, n).layout() for n in names}}
    points = installed_points(model)
    if points:
        entry["activation_points"] = points
    return entry


__all__ = ["layer_weight_bytes", "plan_entry", "report_layers"]
