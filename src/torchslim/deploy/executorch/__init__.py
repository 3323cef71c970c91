"""The ExecuTorch backend: ``torch.export`` + the XNNPACK delegate, a ``.pte`` program run by
ExecuTorch's Python runtime.

==================  ===========================================================================
``export``          :func:`export_executorch`, :class:`ExecuTorchExport`
``qdq_passes``      output quantizers and float weights where XNNPACK's int8 kernels need them
``session``         loading and running a program, XNNPACK threads, timing
==================  ===========================================================================

``executorch`` is an optional dependency (the ``deploy`` extra); without it the backend is still
registered and :meth:`ExecuTorchBackend.available` is False with the reason.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from torchslim.deploy.backend import OptionalRuntimeBackend, register_backend
from torchslim.deploy.executorch.export import ExecuTorchExport, export_executorch
from torchslim.deploy.executorch.session import (
    load_method,
    measure_latency_executorch,
    run_executorch,
    set_xnnpack_threads,
)
from torchslim.measure.latency import LatencyStats


class ExecuTorchBackend(OptionalRuntimeBackend):
    """:class:`~torchslim.deploy.backend.RuntimeBackend` for ExecuTorch with the XNNPACK delegate."""

    name = "executorch"
    suffix = ".pte"

    def unavailable_reason(self) -> str | None:
        """None when the ``executorch`` package is installed, else why not (found, not imported:
        importing ExecuTorch's exporter takes seconds, so a broken install shows at export)."""
        if importlib.util.find_spec("executorch") is None:
            return "the Python package 'executorch' is not installed (pip install 'torchslim[deploy]')"
        return None

    def export(self, model: nn.Module, path: str | Path, example_input: Any) -> ExecuTorchExport:
        return export_executorch(model, path, example_input)

    def run(self, path: str | Path, inputs: Any, *, threads: int | None = None) -> np.ndarray:
        return run_executorch(path, inputs, threads=threads)

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
        return measure_latency_executorch(
            path, example_input, batch_size=batch_size, warmup=warmup, repeats=repeats, threads=threads
        )


EXECUTORCH = register_backend(ExecuTorchBackend())

__all__ = [
    "EXECUTORCH",
    "ExecuTorchBackend",
    "ExecuTorchExport",
    "export_executorch",
    "load_method",
    "measure_latency_executorch",
    "run_executorch",
    "set_xnnpack_threads",
]
