"""OpenVINO export: torchslim's ONNX export (int8 QDQ) converted to OpenVINO IR (``.xml`` + ``.bin``).

The IR is converted from the ONNX file torchslim writes for onnxruntime, not from the PyTorch
model: OpenVINO turns the ONNX ``QuantizeLinear`` / ``DequantizeLinear`` pairs into
``FakeQuantize`` operations that its CPU plugin runs as u8/i8 kernels, while
``openvino.convert_model(torch_model)`` traces torchslim's simulated quantization as float
arithmetic (measured on an int8 fmnist-cnn: from ONNX, 1 f32 and 1 u8 Convolution and 2 u8
FullyConnected kernels; from the torch model, every kernel f32; see docs/deploy.md).
Weights are saved uncompressed (``compress_to_fp16=False``), so the IR computes what the ONNX
file computes.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

from torch import nn

from torchslim.core.errors import ConfigError
from torchslim.deploy.onnxruntime import export_onnx


@dataclasses.dataclass
class OpenVinoExport:
    """What :func:`export_openvino` wrote (the export facts of the OpenVINO backend)."""

    path: Path
    weights_path: Path
    quantized: bool
    input_names: list[str]
    integer_layers: list[str] = dataclasses.field(default_factory=list)
    bytes: int = 0
    notes: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["path"], out["weights_path"] = str(self.path), str(self.weights_path)
        return out


DYNAMIC_NOTE = (
    "{n} dynamic int8 input quantizations (DynamicQuantizeLinear + MatMulInteger) have no fast "
    "OpenVINO kernel (MiniLM-L6 ran slower than its fp32 IR); for OpenVINO quantize the weights only "
    "(activations: null): its CPU plugin quantizes those layers' inputs at run time (docs/deploy.md)"
)


def _count_ops(path: Path, op_type: str) -> int:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return sum(1 for node in graph.node if node.op_type == op_type)


def weights_path_of(path: str | Path) -> Path:
    """The ``.bin`` file beside an IR ``.xml`` file."""
    return Path(path).with_suffix(".bin")


def export_openvino(model: nn.Module, path: str | Path, example_input: Any) -> OpenVinoExport:
    """Write `model` to `path` (``.xml``, with its ``.bin`` beside it) as OpenVINO IR.

    The two files are written in a temporary directory beside `path` and renamed into place, the
    weights first and the ``.xml`` last, so a killed export never leaves an ``.xml`` without its
    weights. The model is not changed.
    """
    import openvino as ov

    path = Path(path)
    if path.suffix != ".xml":
        raise ConfigError(f"export_openvino: path {str(path)!r} must end in '.xml' (OpenVINO IR).")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{path.stem}.ov-", dir=path.parent) as tmp:
        onnx_facts = export_onnx(model, Path(tmp) / "model.onnx", example_input)
        dynamic = _count_ops(onnx_facts.path, "DynamicQuantizeLinear")
        converted = ov.convert_model(str(onnx_facts.path))
        staged = Path(tmp) / "model.xml"
        ov.save_model(converted, str(staged), compress_to_fp16=False)
        os.replace(weights_path_of(staged), weights_path_of(path))
        os.replace(staged, path)
    size = path.stat().st_size + weights_path_of(path).stat().st_size
    notes = ["converted from torchslim's ONNX export (QDQ -> FakeQuantize)"] + list(onnx_facts.notes)
    if dynamic:
        notes.append(DYNAMIC_NOTE.format(n=dynamic))
    return OpenVinoExport(
        path=path,
        weights_path=weights_path_of(path),
        quantized=onnx_facts.quantized,
        input_names=list(onnx_facts.input_names),
        integer_layers=list(onnx_facts.integer_layers),
        bytes=size,
        notes=notes,
    )
