"""Runtime backends: the one seam between torchslim and a runtime a model is deployed to.

A backend exports a model to its runtime's file format, runs that file, checks its output against
PyTorch's, and times it. onnxruntime is the first (:mod:`torchslim.deploy.onnxruntime`); ExecuTorch
or OpenVINO are siblings: one subpackage implementing :class:`RuntimeBackend` and one
:func:`register_backend` call, never a branch in an existing backend.

Backends are found by name through :data:`BACKENDS`; an unknown name is an
:class:`~torchslim.core.errors.UnknownNameError` with a "did you mean".
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
from torch import nn

from torchslim.core.errors import ModelError
from torchslim.core.registry import Registry
from torchslim.measure.agreement import cosine, top_k_agreement
from torchslim.measure.latency import LatencyStats


class ExportFacts(Protocol):
    """What a backend's export wrote: the file, its size, whether compressed layers took their
    runtime form, and notes for the report."""

    @property
    def path(self) -> Path: ...

    @property
    def quantized(self) -> bool: ...

    @property
    def bytes(self) -> int: ...

    @property
    def notes(self) -> list[str]: ...

    def to_dict(self) -> dict[str, Any]: ...


class ParityFacts(Protocol):
    """The runtime's output versus PyTorch's: the largest difference and whether it is within tolerance."""

    @property
    def ok(self) -> bool: ...

    @property
    def max_abs_diff(self) -> float: ...

    def to_dict(self) -> dict[str, Any]: ...


@runtime_checkable
class RuntimeBackend(Protocol):
    """Export to, run on, check against and time on one runtime.

    ``name`` is the registry name (``"onnxruntime"``), ``suffix`` the file suffix of an export
    (``".onnx"``). The model is never changed by any method.
    """

    @property
    def name(self) -> str: ...

    @property
    def suffix(self) -> str: ...

    def available(self) -> bool:
        """True when the runtime can be imported here."""
        ...

    def export(self, model: nn.Module, path: str | Path, example_input: Any) -> ExportFacts:
        """Write `model` to `path` in the runtime's format, atomically."""
        ...

    def run(self, path: str | Path, inputs: Any, *, threads: int | None = None) -> np.ndarray:
        """The first output of the exported file on `inputs`."""
        ...

    def check_parity(self, model: nn.Module, path: str | Path, inputs: Any) -> ParityFacts:
        """Compare the runtime's output of `path` with `model`'s on `inputs`, within the backend's tolerance."""
        ...

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
        """Latency of the exported file on `example_input` (first sample repeated to `batch_size`)."""
        ...


BACKENDS: Registry[None, RuntimeBackend] = Registry("runtime backend")
"""Backend name -> :class:`RuntimeBackend`."""

B = TypeVar("B", bound=RuntimeBackend)


def register_backend(backend: B) -> B:
    """Register `backend` under its ``name`` (idempotent for the same name); returns it."""
    if backend.name not in BACKENDS:
        BACKENDS.register(backend.name, None, backend)
    return backend


def get_backend(name: str) -> RuntimeBackend:
    """The backend registered as `name`; an unknown name raises UnknownNameError with a "did you mean"."""
    return BACKENDS.entry(name).handler


def backend_names() -> list[str]:
    """Every registered backend name, sorted."""
    return BACKENDS.names()


def available_backends() -> list[str]:
    """The registered backends whose runtime can be imported here."""
    return [entry.name for entry in BACKENDS if entry.handler.available()]


def unavailable_reason(backend: RuntimeBackend) -> str | None:
    """Why `backend` cannot run here (its ``unavailable_reason()`` when it has one), None when it can."""
    if backend.available():
        return None
    explain = getattr(backend, "unavailable_reason", None)
    reason = explain() if callable(explain) else None
    return str(reason) if reason else f"the {backend.name} runtime cannot be imported here"


@dataclasses.dataclass
class OutputParity:
    """A runtime's output versus the PyTorch (torchslim-simulated) output on the same inputs.

    The same tolerances for every runtime (onnxruntime names it `ParityReport`): for a
    model with compressed layers ``steps * step`` with ``step = (max - min) / 255`` of the reference
    output (an 8-bit quantizer of its range); for a float model ``atol + rtol * |reference|``
    elementwise. ``cosine`` (the lowest per-sample cosine of the flattened outputs) and
    ``top1_agreement`` (the share of rows whose last-axis argmax agrees; None for one value a row)
    say how far apart a failing output is: rounding differences that compound in a deep int8 network
    keep both near 1, a broken export does not.
    """

    max_abs_diff: float
    step: float | None
    tolerance: float
    quantized: bool
    ok: bool
    max_diff_in_steps: float | None = None
    cosine: float | None = None
    top1_agreement: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def compare_outputs(
    reference: np.ndarray,
    got: np.ndarray,
    *,
    quantized: bool,
    steps: float = 2.0,
    rtol: float = 1e-3,
    atol: float = 1e-5,
) -> OutputParity:
    """Compare a runtime's output `got` with the PyTorch `reference` (see :class:`OutputParity`)."""
    ref = np.asarray(reference, dtype=np.float32)
    out = np.asarray(got, dtype=np.float32)
    if out.shape != ref.shape:
        raise ModelError(f"runtime output shape {list(out.shape)} differs from the model's {list(ref.shape)}.")
    diff = np.abs(out - ref)
    max_diff = float(diff.max()) if diff.size else 0.0
    closeness = {"cosine": _lowest_cosine(ref, out), "top1_agreement": top_k_agreement(ref, out, k=1)}
    if quantized:
        step = float(ref.max() - ref.min()) / 255.0 if ref.size else 0.0
        tolerance = steps * step
        in_steps = max_diff / step if step > 0 else None
        return OutputParity(max_diff, step, tolerance, True, max_diff <= tolerance + 1e-12, in_steps, **closeness)
    bound = atol + rtol * np.abs(ref)
    tolerance = float(bound.max()) if bound.size else atol
    return OutputParity(max_diff, None, tolerance, False, bool((diff <= bound).all()), **closeness)


def _lowest_cosine(ref: np.ndarray, got: np.ndarray) -> float | None:
    """The lowest cosine over the samples (the first axis; a 0-D or 1-D output is one sample)."""
    if not ref.size:
        return None
    if ref.ndim < 2:
        return cosine(ref, got)
    return min(cosine(r, g) for r, g in zip(ref, got, strict=True))


class OptionalRuntimeBackend:
    """What every backend whose runtime is an optional package shares: :meth:`available` from
    :meth:`unavailable_reason`, and parity by running the exported file and comparing its output
    with PyTorch's (:func:`compare_outputs`). Subclasses add ``name``, ``suffix``, ``export``,
    ``run``, ``time`` and ``unavailable_reason``."""

    def available(self) -> bool:
        return self.unavailable_reason() is None

    def unavailable_reason(self) -> str | None:
        raise NotImplementedError

    def run(self, path: str | Path, inputs: Any, *, threads: int | None = None) -> np.ndarray:
        raise NotImplementedError

    def check_parity(self, model: nn.Module, path: str | Path, inputs: Any) -> OutputParity:
        from torchslim.core.layer import compressed_layers
        from torchslim.deploy.onnxruntime.parity import reference_output

        quantized = any(True for _ in compressed_layers(model))
        return compare_outputs(reference_output(model, inputs), self.run(path, inputs), quantized=quantized)
