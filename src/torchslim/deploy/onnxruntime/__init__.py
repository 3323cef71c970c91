"""The onnxruntime backend: ONNX export (int8 QDQ for compressed layers), graph passes, sessions,
parity and timing, each in its own module.

==================  ===========================================================================
``export``          :func:`export_onnx`, :class:`OnnxExport` (tracing with layers in ONNX form)
``graph_passes``    the QDQ passes that make onnxruntime fuse integer kernels
``inputs``          example inputs -> named tensors, and onnxruntime feeds
``session``         sessions, the kernels onnxruntime runs, :func:`measure_latency_onnx`
``parity``          :func:`check_parity`, :class:`ParityReport`
==================  ===========================================================================
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from torchslim.deploy.backend import register_backend
from torchslim.deploy.onnxruntime.export import DEFAULT_OPSET, OnnxExport, export_onnx
from torchslim.deploy.onnxruntime.graph_passes import (
    COMPUTE_OPS,
    TRANSPARENT_OPS,
    constant_value,
    float_weights_where_unfused,
    pool_before_float_relu,
    propagate_output_qdq,
)
from torchslim.deploy.onnxruntime.inputs import normalize_inputs, onnx_feeds
from torchslim.deploy.onnxruntime.parity import ParityReport, check_parity
from torchslim.deploy.onnxruntime.session import (
    FLOAT_COMPUTE_OPS,
    INTEGER_OPS,
    integer_op_summary,
    kernel_census,
    measure_latency_onnx,
    optimized_op_counts,
    ort_session,
    run_onnx,
)
from torchslim.measure.latency import LatencyStats


class OnnxRuntimeBackend:
    """:class:`~torchslim.deploy.backend.RuntimeBackend` for onnxruntime on the CPU."""

    name = "onnxruntime"
    suffix = ".onnx"

    def available(self) -> bool:
        return importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None

    def export(self, model: nn.Module, path: str | Path, example_input: Any) -> OnnxExport:
        return export_onnx(model, path, example_input)

    def run(self, path: str | Path, inputs: Any, *, threads: int | None = None) -> np.ndarray:
        return run_onnx(path, inputs, threads=threads)

    def check_parity(self, model: nn.Module, path: str | Path, inputs: Any) -> ParityReport:
        return check_parity(model, path, inputs)

    def time(
        self,
        path: str | Path,
        example_input: Any,
        *,
        batch_size: int | None = None,
        warmup: int = 3,
        repeats: int = 20,
        threads: int | None = None,
    ) -> LatencyStats:
        return measure_latency_onnx(
            path, example_input, batch_size=batch_size, warmup=warmup, repeats=repeats, threads=threads
        )


ONNXRUNTIME = register_backend(OnnxRuntimeBackend())

__all__ = [
    "COMPUTE_OPS",
    "DEFAULT_OPSET",
    "FLOAT_COMPUTE_OPS",
    "INTEGER_OPS",
    "ONNXRUNTIME",
    "OnnxExport",
    "OnnxRuntimeBackend",
    "ParityReport",
    "TRANSPARENT_OPS",
    "check_parity",
    "constant_value",
    "export_onnx",
    "float_weights_where_unfused",
    "integer_op_summary",
    "kernel_census",
    "measure_latency_onnx",
    "normalize_inputs",
    "onnx_feeds",
    "optimized_op_counts",
    "ort_session",
    "pool_before_float_relu",
    "propagate_output_qdq",
    "run_onnx",
]
