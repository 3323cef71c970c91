"""The OpenVINO backend: torchslim's ONNX export converted to OpenVINO IR, run by the CPU plugin.

==================  ===========================================================================
``export``          :func:`export_openvino`, :class:`OpenVinoExport` (ONNX -> IR ``.xml`` + ``.bin``)
``session``         compiling with a thread count, running, kernel precisions, timing
==================  ===========================================================================

``openvino`` is an optional dependency (the ``deploy`` extra); without it the backend is still
registered and :meth:`OpenVinoBackend.available` is False with the reason.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from torchslim.deploy.backend import OptionalRuntimeBackend, register_backend
from torchslim.deploy.openvino.export import OpenVinoExport, export_openvino, weights_path_of
from torchslim.deploy.openvino.session import (
    DEFAULT_PRECISION,
    compile_ir,
    kernel_precisions,
    measure_latency_openvino,
    run_openvino,
)
from torchslim.measure.latency import LatencyStats


class OpenVinoBackend(OptionalRuntimeBackend):
    """:class:`~torchslim.deploy.backend.RuntimeBackend` for OpenVINO's CPU plugin."""

    name = "openvino"
    suffix = ".xml"

    def unavailable_reason(self) -> str | None:
        """None when ``openvino`` and ``onnx`` can be imported, else why not."""
        for module in ("openvino", "onnx"):
            if importlib.util.find_spec(module) is None:
                return f"the Python package {module!r} is not installed (pip install 'torchslim[deploy]')"
        return None

    def export(self, model: nn.Module, path: str | Path, example_input: Any) -> OpenVinoExport:
        return export_openvino(model, path, example_input)

    def run(self, path: str | Path, inputs: Any, *, threads: int | None = None) -> np.ndarray:
        return run_openvino(path, inputs, threads=threads)

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
        return measure_latency_openvino(
            path, example_input, batch_size=batch_size, warmup=warmup, repeats=repeats, threads=threads
        )


OPENVINO = register_backend(OpenVinoBackend())

__all__ = [
    "DEFAULT_PRECISION",
    "OPENVINO",
    "OpenVinoBackend",
    "OpenVinoExport",
    "compile_ir",
    "export_openvino",
    "kernel_precisions",
    "measure_latency_openvino",
    "run_openvino",
    "weights_path_of",
]
