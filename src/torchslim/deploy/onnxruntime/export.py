"""ONNX export: float models, and compressed models in their ONNX form (int8 QDQ for torchslim's
quantized layers) that onnxruntime runs with integer kernels.

:func:`export_onnx` traces the model with the TorchScript ONNX exporter. Every layer that
implements the layer contract (:class:`torchslim.core.layer.CompressedLayer`) is switched to its
export form with ``onnx_form(True)`` while tracing and emits, with the scales and zero points
torchslim computed (nothing is re-calibrated):

* ``DequantizeLinear`` on int8 weight initializers (per tensor, or per output channel with ``axis``);
* ``QuantizeLinear`` -> ``DequantizeLinear`` on each statically quantized input, and the bias as an
  int32 initializer with scale ``s_in * s_w`` (what an integer kernel adds);
* for dynamically quantized Linear layers, onnxruntime's dynamic int8 pattern
  ``DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul -> Add`` (fused into ``DynamicQuantizeMatMul``).

The graph passes of :mod:`torchslim.deploy.onnxruntime.graph_passes` then make the integer fusion
reliable, and :mod:`~torchslim.deploy.onnxruntime.layout_passes` flattens int8 convolution outputs in
onnxruntime's NHWC order before the classifier;
:func:`torchslim.deploy.onnxruntime.session.optimized_op_counts` lists the operators onnxruntime
actually runs and :func:`torchslim.deploy.onnxruntime.parity.check_parity` compares its output with
torchslim's simulated output.
"""

from __future__ import annotations

import dataclasses
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from torchslim.core.errors import ConfigError, ModelError
from torchslim.core.layer import CompressedLayer, compressed_layers
from torchslim.deploy.onnxruntime.graph_passes import (
    drop_repeated_qdq,
    float_weights_where_unfused,
    pool_before_float_relu,
    propagate_output_qdq,
)
from torchslim.deploy.onnxruntime.inputs import (
    forward_parameters,
    keyword_inputs,
    normalize_inputs,
    output_tensor,
    with_decoder_inputs,
)
from torchslim.deploy.onnxruntime.layout_passes import flatten_channels_last
from torchslim.io.atomic import atomic_path

DEFAULT_OPSET = 17

EAGER_ATTENTION_NOTE = (
    "Hugging Face attention exported as explicit MatMul/Softmax instead of torch's scaled_dot_product_attention "
    "(whose ONNX form adds an IsNaN/Where pass over every attention matrix); the model itself is unchanged."
)


DECODER_INPUTS_NOTE = (
    "decoder_input_ids were built from input_ids shifted right (decoder_start_token_id first); "
    "check_parity builds them the same way."
)

NO_CACHE_NOTE = (
    "Traced with use_cache=False: the graph computes the full sequence without a key/value cache "
    "(no past_key_values inputs or outputs)."
)


class _ByName(nn.Module):
    """`model` called with its inputs by name (positional tensors -> keywords), returning one tensor.

    Parameters the example does not give keep their defaults; `fixed` adds constant keywords such as
    ``use_cache=False``. The output is :func:`torchslim.deploy.onnxruntime.inputs.output_tensor` of
    the model's output, the tensor :func:`check_parity` compares.
    """

    def __init__(self, model: nn.Module, names: list[str], fixed: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.names = names
        self.fixed = fixed

    def forward(self, *args: Tensor) -> Tensor:
        return output_tensor(self.model(**dict(zip(self.names, args, strict=True)), **self.fixed))


def _by_name(model: nn.Module, example_input: Mapping[str, Any]) -> tuple[_ByName, tuple[Tensor, ...], list[str]]:
    """Wrap `model` to take the mapping's tensors by name, with the key/value cache off when it has one."""
    args, names = keyword_inputs(model, example_input)
    params = forward_parameters(model) or []
    fixed: dict[str, Any] = {}
    if "use_cache" in params and "use_cache" not in names:
        fixed["use_cache"] = False
    return _ByName(model, names, fixed), args, names


def _prepare(
    model: nn.Module, example_input: Any, input_names: Sequence[str] | None
) -> tuple[nn.Module, tuple[Tensor, ...], list[str], list[str]]:
    """The module to trace, its positional inputs, their names, and the notes on how they were made.

    A mapping's tensors are passed to ``forward`` by name (they become the graph inputs, in
    ``forward``'s order), every other parameter keeps its default, a ``use_cache`` parameter is set
    to False, ``decoder_input_ids`` an encoder-decoder needs are built from ``input_ids`` when the
    example has none (:func:`torchslim.deploy.onnxruntime.inputs.with_decoder_inputs`), and the
    graph's single output is the tensor :func:`check_parity` compares (logits, else the first tensor
    of a ``ModelOutput`` / tuple). Each of these choices is said in :attr:`OnnxExport.notes`.
    """
    given = example_input
    example_input = with_decoder_inputs(model, example_input)
    if not isinstance(example_input, Mapping):
        args, names = normalize_inputs(model, example_input, input_names)
        return model, args, names, []
    wrapper, args, names = _by_name(model, example_input)
    if input_names is not None:
        if len(input_names) != len(args):
            raise ConfigError(f"export_onnx: {len(input_names)} input_names for {len(args)} inputs.")
        names = [str(n) for n in input_names]
    notes = [NO_CACHE_NOTE] if wrapper.fixed.get("use_cache") is False else []
    if example_input is not given:
        notes.append(DECODER_INPUTS_NOTE)
    return wrapper, args, names, notes


@dataclasses.dataclass
class OnnxExport:
    """What :func:`export_onnx` wrote (the export facts of the onnxruntime backend)."""

    path: Path
    quantized: bool
    opset: int
    input_names: list[str]
    output_names: list[str]
    integer_layers: list[str] = dataclasses.field(default_factory=list)
    float_weight_layers: list[str] = dataclasses.field(default_factory=list)
    inserted_qdq: int = 0
    removed_relu: int = 0
    bytes: int = 0
    notes: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["path"] = str(self.path)
        return out


def _eager_attention(model: nn.Module) -> list[tuple[Any, str]]:
    """Switch every Hugging Face model inside `model` from SDPA to eager attention for tracing.

    torch's ONNX form of ``scaled_dot_product_attention`` guards fully masked rows with
    ``Where(IsNaN(p), 0, p)`` over every attention matrix, a pass that costs onnxruntime a large share
    of its time on MiniLM (see ``benchmarks/results/int8_breakdown.md``). Eager attention is the same
    softmax(QK^T / sqrt(d) + mask) V without it. Returns ``(module, previous)`` pairs to restore.
    (``config._attn_implementation`` is how transformers itself reads the current choice.)
    """
    switched: list[tuple[Any, str]] = []
    seen: set[int] = set()
    for module in model.modules():
        config = getattr(module, "config", None)
        setter = getattr(module, "set_attn_implementation", None)
        if config is None or not callable(setter) or id(config) in seen:
            continue
        seen.add(id(config))
        previous = getattr(config, "_attn_implementation", None)
        if previous == "sdpa":
            setter("eager")
            if getattr(config, "_attn_implementation", None) == "eager":
                switched.append((module, previous))
    return switched


def _dynamic_axes(
    names: list[str],
    args: tuple[Tensor, ...],
    out_names: list[str],
    *,
    dynamic_batch: bool,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None,
) -> dict[str, dict[int, str]]:
    if dynamic_axes is not None or not dynamic_batch:
        return {k: dict(v) for k, v in (dynamic_axes or {}).items()}
    axes: dict[str, dict[int, str]] = {}
    for name, tensor in zip(names, args, strict=True):
        axes[name] = {0: "batch"}
        if not tensor.is_floating_point() and tensor.dim() >= 2:
            axes[name][1] = "decoder_sequence" if name.startswith("decoder_") else "sequence"
    for name in out_names:
        axes[name] = {0: "batch"}
    return axes


@dataclasses.dataclass
class _Traced:
    proto: Any
    integer_layers: list[str]
    float_weight_layers: list[str]
    eager_attention: bool


def _detach_caches(model: nn.Module) -> list[tuple[nn.Module, str, Any]]:
    """Detach the tensors modules hold outside their parameters and buffers (caches such as LeViT's
    attention biases, filled by an earlier forward pass with gradients on), which the exporter
    refuses to bake in as constants while they require grad; returns what to restore."""

    def detached(value: Any) -> Any:
        if isinstance(value, Tensor):
            return value.detach()
        if isinstance(value, dict):
            return {k: detached(v) for k, v in value.items()}
        return value

    def needs(value: Any) -> bool:
        if isinstance(value, Tensor):
            return value.requires_grad
        return isinstance(value, dict) and any(needs(v) for v in value.values())

    saved = []
    for module in model.modules():
        for key, value in list(vars(module).items()):
            if not key.startswith("_") and needs(value):
                saved.append((module, key, value))
                setattr(module, key, detached(value))
    return saved


def _trace(
    model: nn.Module,
    args: tuple[Tensor, ...],
    layers: list[tuple[str, CompressedLayer]],
    *,
    eager_attention: bool,
    export_kwargs: dict[str, Any],
    axes: dict[str, dict[int, str]],
) -> _Traced:
    """Trace `model` in eval mode with its compressed layers in their ONNX form; restore everything."""
    import onnx

    flags = [(m, m.training) for m in model.modules()]
    integer_layers: list[str] = []
    float_weight_layers: list[str] = []
    switched: list[tuple[Any, str]] = []
    entered: list[CompressedLayer] = []
    caches = _detach_caches(model)
    try:
        model.eval()
        switched = _eager_attention(model) if eager_attention else []
        for name, layer in layers:
            entered.append(layer)
            form = layer.onnx_form(True)
            (integer_layers if form.integer_weights else float_weight_layers).append(name)
        with tempfile.TemporaryDirectory(prefix="torchslim-onnx-") as tmp:
            raw = Path(tmp) / "raw.onnx"
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    model,
                    args,
                    str(raw),
                    dynamo=False,
                    do_constant_folding=True,
                    dynamic_axes=axes or None,
                    **export_kwargs,
                )
            proto = onnx.load(str(raw))
    except (RuntimeError, TypeError, ValueError, NotImplementedError) as exc:
        raise ModelError(
            f"export_onnx: {type(model.model if isinstance(model, _ByName) else model).__name__} could not be "
            f"exported: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        for module, implementation in reversed(switched):
            module.set_attn_implementation(implementation)
        for layer in entered:
            layer.onnx_form(False)
        for module, flag in flags:
            module.training = flag
        for module, key, value in caches:
            setattr(module, key, value)
    return _Traced(proto, integer_layers, float_weight_layers, bool(switched))


def export_onnx(
    model: nn.Module,
    path: str | Path,
    example_input: Any,
    *,
    opset: int = DEFAULT_OPSET,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    dynamic_batch: bool = True,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
    propagate_qdq: bool = True,
    eager_attention: bool = True,
) -> OnnxExport:
    """Write `model` to `path` as ONNX (int8 QDQ for torchslim-quantized layers), atomically.

    `example_input` is a tensor, a tuple of tensors or a mapping passed by name (see :func:`_prepare`).
    With `dynamic_batch` every input's and output's first dimension is dynamic, and the second one of
    integer inputs of rank >= 2 (token ids; ``decoder_sequence`` for ``decoder_*``) too; `dynamic_axes` overrides that.
    The model is traced in eval mode; its modes are restored afterwards and it is not changed.
    With `eager_attention` Hugging Face models inside `model` are traced with eager attention
    instead of SDPA (see :func:`_eager_attention`), and switched back afterwards.
    """
    import onnx

    if opset < 13:
        raise ConfigError(f"export_onnx: opset {opset} is too old; per-channel DequantizeLinear needs opset >= 13.")
    traced_model, args, names, input_notes = _prepare(model, example_input, input_names)
    layers = list(compressed_layers(model))
    quantized = bool(layers)
    out_names = list(output_names) if output_names is not None else ["output"]
    axes = _dynamic_axes(names, args, out_names, dynamic_batch=dynamic_batch, dynamic_axes=dynamic_axes)
    export_kwargs = {"opset_version": opset, "input_names": names, "output_names": out_names}
    traced = _trace(traced_model, args, layers, eager_attention=eager_attention, export_kwargs=export_kwargs, axes=axes)
    inserted = removed = 0
    if quantized and propagate_qdq:
        pool_before_float_relu(traced.proto)
        inserted, removed = propagate_output_qdq(traced.proto)
        drop_repeated_qdq(traced.proto)
        flatten_channels_last(traced.proto)
        float_weights_where_unfused(traced.proto)
    onnx.checker.check_model(traced.proto)
    path = Path(path)
    with atomic_path(path) as tmp_path:
        onnx.save(traced.proto, str(tmp_path))
    return OnnxExport(
        path=path,
        quantized=quantized,
        opset=opset,
        input_names=names,
        output_names=out_names,
        integer_layers=traced.integer_layers,
        float_weight_layers=traced.float_weight_layers,
        inserted_qdq=inserted,
        removed_relu=removed,
        bytes=path.stat().st_size,
        notes=_notes(traced, opset=opset) + input_notes,
    )


def _notes(traced: _Traced, *, opset: int) -> list[str]:
    """What the report should say about this export (eager attention, weights exported as float)."""
    notes = [EAGER_ATTENTION_NOTE] if traced.eager_attention else []
    if traced.float_weight_layers:
        notes.append(
            f"{len(traced.float_weight_layers)} per-group or non-integer-level (k-means, power-of-two, TTQ) "
            f"layer(s) are stored as dequantized float32 weights (opset {opset} has no block-wise or codebook "
            "DequantizeLinear): smaller on disk as a torchslim artifact, not in this ONNX file, and run on float "
            "kernels; onnxruntime may re-quantize such weights per tensor when it fuses an integer kernel, so "
            "check_parity is the judge of these layers."
        )
    return notes
