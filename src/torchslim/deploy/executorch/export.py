"""ExecuTorch export: ``torch.export`` -> edge dialect -> XNNPACK delegate -> ``.pte`` program.

Compressed layers are switched to their export form (the layer contract's ``onnx_form(True)``)
while ``torch.export`` traces, exactly as for the ONNX export, and switched back afterwards. The
program has the example input's static shapes: with executorch 1.5.1 on torch 2.13 a dynamic
batch dimension exported with an upper bound of 256 or 1024 still got input buffers for 15
samples of fmnist-cnn (``Attempted to resize a bounded tensor``), so a program runs the batch it
was exported with (static shapes also let XNNPACK plan its kernels ahead).

A model with compressed layers is refused (:class:`~torchslim.core.errors.ModelError`): their
export form is torchslim's simulated int8 arithmetic (round, clamp, float kernels on dequantized
weights), which XNNPACK does not take, so it runs on ExecuTorch's portable kernels. Measured on
this machine with executorch 1.5.1 and torch 2.13.0: the int8 fmnist-cnn at batch 32, 2 threads
took 264-266 ms against 1.26-1.43 ms for its float model (same output). What is missing is a form
of the layer contract that emits the ``quantized_decomposed`` quantize / dequantize operators the
XNNPACK partitioner turns into int8 kernels (see docs/deploy.md).
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
from torchslim.deploy.onnxruntime.inputs import normalize_inputs
from torchslim.io.atomic import write_bytes

COMPRESSED_REFUSAL = (
    "ExecuTorch export of torchslim-compressed layers is not supported yet: their export form is simulated "
    "int8 arithmetic that XNNPACK does not delegate (the int8 fmnist-cnn ran about 200x slower than its float "
    "model on ExecuTorch's portable kernels); the quantized_decomposed form for XNNPACK is not implemented. "
    "Deploy the compressed model with onnxruntime or openvino."
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


def export_executorch(model: nn.Module, path: str | Path, example_input: Any) -> ExecuTorchExport:
    """Write `model` to `path` as an ExecuTorch program (``.pte``) with the XNNPACK delegate, atomically.

    The model is traced in eval mode at the example input's shapes; its modes are restored
    afterwards. A model with compressed layers is a ModelError (see the module docstring).
    """
    args, _ = normalize_inputs(model, example_input)
    layers = [name for name, _ in compressed_layers(model)]
    if layers:
        raise ModelError(f"{COMPRESSED_REFUSAL} Compressed layers: {layers[:5]}{' ...' if len(layers) > 5 else ''}.")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        exported = torch.export.export(model, tuple(a.detach() for a in args))
    finally:
        for module, flag in flags:
            module.training = flag
    lowered = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
    delegated, portable = _op_counts(lowered)
    buffer = lowered.to_executorch().buffer
    path = Path(path)
    write_bytes(path, bytes(buffer))
    return ExecuTorchExport(
        path=path,
        quantized=False,
        delegated_calls=delegated,
        portable_ops=portable,
        input_shapes=[list(a.shape) for a in args],
        bytes=path.stat().st_size,
    )
