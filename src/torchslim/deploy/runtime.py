"""A model deployed to a runtime for measurement: exported once, checked to run, then timed.

:func:`deploy_for_timing` is what :func:`torchslim.compress` and :func:`torchslim.analyze` call
once per model and runtime; the :class:`Deployment` it returns hands
:func:`torchslim.measure.analyze` a :class:`~torchslim.measure.latency.RuntimeTimer`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from torch import nn

from torchslim.deploy.backend import ExportFacts, RuntimeBackend, get_backend
from torchslim.measure.latency import LatencyStats, RuntimeTimer


@dataclasses.dataclass
class Deployment:
    """A file exported for one backend, and the example input it is timed on."""

    backend: RuntimeBackend
    path: Path
    example_input: Any
    facts: ExportFacts | None = None

    def time(
        self, *, batch_size: int | None = None, warmup: int = 3, repeats: int = 20, threads: int | None = None
    ) -> LatencyStats:
        """Latency on the backend's runtime (the first sample repeated to `batch_size`)."""
        return self.backend.time(
            self.path, self.example_input, batch_size=batch_size, warmup=warmup, repeats=repeats, threads=threads
        )

    @property
    def timer(self) -> RuntimeTimer:
        """This deployment's :meth:`time`, as :func:`torchslim.measure.analyze` takes it."""
        return self.time


def deploy_file(path: str | Path, example_input: Any, *, backend: str = "onnxruntime") -> Deployment:
    """A :class:`Deployment` of a file already exported for `backend` (nothing is exported)."""
    return Deployment(get_backend(backend), Path(path), example_input)


def deploy_for_timing(
    model: nn.Module, example_input: Any, directory: str | Path, *, backend: str = "onnxruntime"
) -> tuple[Deployment | None, str | None]:
    """Export `model` once into `directory` for `backend` and run it once.

    Returns ``(deployment, None)``, or ``(None, reason)`` when the export or the first run fails
    (the caller then measures in PyTorch eager and reports the reason).
    """
    runtime = get_backend(backend)
    path = Path(directory) / f"model-{id(model)}{runtime.suffix}"
    try:
        facts = runtime.export(model, path, example_input)
        runtime.run(path, example_input, threads=1)
    except Exception as exc:  # noqa: BLE001 - any export failure means "measure in PyTorch", with the reason
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return Deployment(runtime, path, example_input, facts), None
