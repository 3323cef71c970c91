"""ExecuTorch export: ``torch.export`` -> edge dialect -> XNNPACK delegate -> ``.pte`` program.

Quantized layers are switched to their ``pt2e`` export form (the layer contract's
``onnx_form(True, dialect="pt2e")``: PyTorch's ``quantized_decomposed`` quantize / dequantize
operators on activations and int8 weights) while ``torch.export`` traces, and switched back
afterwards; the int8 points between layers (residual adds) likewise. :mod:`.qdq_passes` then puts
an output quantizer directly after every int8 convolution, linear layer and add (XNNPACK's static
int8 kernels need one; torchslim quantizes where the next layer reads), merges quantizers repeated
on one value, and gives a layer with a float output (the classifier) its weight as a float
constant; the result is exported again and lowered with the XNNPACK partitioner, which turns the
``dequantize -> op -> quantize`` groups into int8 kernels. Measured on this machine (executorch
1.5.1, torch 2.13.0): the int8 fmnist-cnn is one XNNPACK delegate call with no portable kernel
left and the same output as torchslim's simulation (max abs diff 4e-8).

The program has the example input's static shapes: with executorch 1.5.1 on torch 2.13 a dynamic
batch dimension exported with an upper bound of 256 or 1024 still got input buffers for 15
samples of fmnist-cnn (``Attempted to resize a bounded tensor``), so a program runs the batch it
was exported with (static shapes also let XNNPACK plan its kernels ahead).
"""

from __future__ import annotations

import collections
import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchslim.core.errors import ModelError
from torchslim.core.layer import compressed_layers
from torchslim.deploy.executorch.qdq_passes import (
    float_weights_where_unfused,
    merge_repeated_quantizers,
    propagate_output_qdq,
)
from torchslim.deploy.onnxruntime.inputs import normalize_inputs
from torchslim.io.atomic import write_bytes

DYNAMIC_REFUSAL = (
    "ExecuTorch export of dynamically quantized inputs needs per-token ranges on Linear layers "
    "(ActivationQuant(dynamic_granularity='per_token')), the pattern XNNPACK runs as its dynamic int8 kernel: "
    "a per-tensor range, or a dynamic input of another layer type, is torchslim's simulated arithmetic on "
    "portable kernels (torch.export could not decompose it on transposed attention inputs). Quantize with "
    "per-token dynamic inputs, or deploy this model with onnxruntime."
)


@dataclasses.dataclass
class ExecuTorchExport:
    """What :func:`export_executorch` wrote (the export facts of the ExecuTorch backend)."""

    path: Path
    quantized: bool
    delegated_calls: int
    portable_ops: dict[str, int]
    input_shapes: list[list[int]]
    bytes: int = 0
    notes: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["path"] = str(self.path)
        return out


def _op_counts(program: Any) -> tuple[int, dict[str, int]]:
    """Delegate calls and the other (portable-kernel) operators of a lowered program's graph."""
    counts: collections.Counter[str] = collections.Counter()
    delegated = 0
    for node in program.exported_program().graph.nodes:
        if node.op != "call_function":
            continue
        name = getattr(node.target, "__name__", str(node.target))
        if "executorch_call_delegate" in name:
            delegated += 1
        elif name != "getitem":
            counts[name] += 1
    return delegated, dict(counts)


def _traced_program(model: nn.Module, args: tuple[Any, ...]) -> tuple[Any, list[str], int]:
    """``torch.export`` of `model` with its compressed layers and int8 points in their ``pt2e``
    form, then with the output quantizers XNNPACK needs (:mod:`.qdq_passes`), exported again.
    Returns the program, the layers with integer weights and the quantizers inserted."""
    integer_layers: list[str] = []
    dynamic: list[str] = []
    entered: list[Any] = []
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        for name, layer in compressed_layers(model):
            entered.append(layer)
            form = layer.onnx_form(True, dialect="pt2e")
            if form.integer_weights:
                integer_layers.append(name)
            activation = form.details.get("activation") or {}
            if activation.get("mode") == "dynamic" and (
                activation.get("granularity") != "per_token" or not isinstance(layer, nn.Linear)
            ):
                dynamic.append(name)
        if dynamic:
            raise ModelError(DYNAMIC_REFUSAL + f" Layers: {dynamic[:5]}{' ...' if len(dynamic) > 5 else ''}.")
        with torch.no_grad():
            exported = torch.export.export(model, args)
    finally:
        for layer in entered:
            layer.onnx_form(False)
        for module, flag in flags:
            module.training = flag
    if not entered:
        return exported, integer_layers, 0
    graph_module = exported.module()
    merge_repeated_quantizers(graph_module)
    inserted = propagate_output_qdq(graph_module)
    float_weights_where_unfused(graph_module)
    return torch.export.export(graph_module, args), integer_layers, inserted


def export_executorch(model: nn.Module, path: str | Path, example_input: Any) -> ExecuTorchExport:
    """Write `model` to `path` as an ExecuTorch program (``.pte``) with the XNNPACK delegate, atomically.

    The model is traced in eval mode at the example input's shapes; its modes are restored
    afterwards. Quantized layers export in their ``pt2e`` form (see the module docstring).
    """
    args, _ = normalize_inputs(model, example_input)
    args = tuple(a.detach() for a in args)
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    try:
        exported, integer_layers, inserted = _traced_program(model, args)
        lowered = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
    except ModelError:
        raise
    except (RuntimeError, TypeError, ValueError, NotImplementedError) as exc:
        raise ModelError(
            f"export_executorch: {type(model).__name__} could not be exported: {type(exc).__name__}: {exc}"
        ) from exc
    delegated, portable = _op_counts(lowered)
    buffer = lowered.to_executorch().buffer
    path = Path(path)
    write_bytes(path, bytes(buffer))
    notes = [f"{inserted} output quantizers copied for XNNPACK"] if inserted else []
    return ExecuTorchExport(
        path=path,
        quantized=bool(integer_layers),
        delegated_calls=delegated,
        portable_ops=portable,
        input_shapes=[list(a.shape) for a in args],
        bytes=path.stat().st_size,
        notes=notes,
    )
