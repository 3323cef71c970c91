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
from collections.abc import Mapping
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


PARITY_COSINE = 0.998
"""The lowest per-sample cosine a compressed model's runtime output may have to the simulated one
when it is more than the step bound off (see :func:`close_to_reference`). Measured on
EfficientNet-Lite0 int8 and 32 held-out photo crops (docs/deploy.md, "Parity"): onnxruntime's integer
kernels and its own reference execution of the same file (graph optimizations off) are up to 8.2
steps apart with a lowest cosine of 0.99906, torchslim's simulation and onnxruntime 6.8 steps with
0.99912, a mean difference under 0.07 steps and the same top-1 class for every crop."""

MAX_MEAN_DIFF_STEPS = 0.5
"""The largest mean signed difference (in steps) of a close output: rounding noise averages out
(under 0.07 steps in the measurement above), an offset such as a wrong zero point does not."""

MAX_NORM_CHANGE = 0.05
"""The largest relative change of a sample's norm in a close output (cosine cannot see a scale error;
rounding noise changed norms by at most 1.7% in the measurement above)."""


@dataclasses.dataclass
class OutputParity:
    """A runtime's output versus the PyTorch (torchslim-simulated) output on the same inputs.

    The same tolerances for every runtime (onnxruntime names it `ParityReport`): for a
    model with compressed layers ``steps * step`` with ``step = (max - min) / 255`` of the reference
    output (an 8-bit quantizer of its range), or else *close* (:func:`close_to_reference`); for a
    float model ``atol + rtol * |reference|`` elementwise. ``cosine`` (the lowest per-sample cosine
    of the flattened outputs), ``top1_agreement`` (the share of rows whose last-axis argmax agrees;
    None for one value a row), ``mean_diff_in_steps`` (the mean signed difference) and
    ``norm_change`` (the largest relative change of a sample's norm) say how far apart the outputs
    are: rounding differences that compound in a deep int8 network keep the cosine and agreement
    near 1 and the mean near 0, a broken export does not. ``within_steps`` and ``close`` record
    which test passed; ``cosine_bound`` is the cosine the close test used (None: not applied).
    """

    max_abs_diff: float
    step: float | None
    tolerance: float
    quantized: bool
    ok: bool
    max_diff_in_steps: float | None = None
    cosine: float | None = None
    top1_agreement: float | None = None
    mean_diff_in_steps: float | None = None
    norm_change: float | None = None
    within_steps: bool | None = None
    close: bool | None = None
    cosine_bound: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def verdict(self) -> str:
        """``"within steps"``, ``"close"`` or ``"failed"`` for a compressed model; ``"ok"`` or
        ``"failed"`` for a float one."""
        if not self.quantized:
            return "ok" if self.ok else "failed"
        return "within steps" if self.within_steps else ("close" if self.close else "failed")


def close_to_reference(facts: Mapping[str, Any], cosine_bound: float | None) -> bool:
    """Whether a compressed model's output, further off than the step bound, is still close: every
    sample's cosine >= `cosine_bound` (its direction), the mean signed difference within
    :data:`MAX_MEAN_DIFF_STEPS` steps (no offset), every sample's norm within :data:`MAX_NORM_CHANGE`
    (no scale error) and every row's top-1 the same (None when there is no per-row argmax). `facts`
    is an :class:`OutputParity` as a dict; `cosine_bound` None turns the test off.

    Why a second test: the step bound compares single values, and in a deep int8 network one-code
    rounding differences between two correct integer implementations compound (58 requantizations
    in EfficientNet-Lite0: onnxruntime is up to 8 steps apart from itself with optimizations on and
    off). The close test accepts that and still refuses a wrong layout, offset or scale.
    """
    if cosine_bound is None or not facts.get("quantized"):
        return False
    cos, mean_diff, norm_change = (facts.get(k) for k in ("cosine", "mean_diff_in_steps", "norm_change"))
    if cos is None or mean_diff is None or norm_change is None:
        return False
    top1 = facts.get("top1_agreement")
    return bool(
        float(cos) >= cosine_bound
        and abs(float(mean_diff)) <= MAX_MEAN_DIFF_STEPS
        and float(norm_change) <= MAX_NORM_CHANGE
        and (top1 is None or float(top1) >= 1.0)
    )


def compare_outputs(
    reference: np.ndarray,
    got: np.ndarray,
    *,
    quantized: bool,
    steps: float = 2.0,
    rtol: float = 1e-3,
    atol: float = 1e-5,
    cosine_bound: float | None = PARITY_COSINE,
) -> OutputParity:
    """Compare a runtime's output `got` with the PyTorch `reference` (see :class:`OutputParity`);
    `cosine_bound` is the close test's (:func:`close_to_reference`; None: the step bound only)."""
    ref = np.asarray(reference, dtype=np.float32)
    out = np.asarray(got, dtype=np.float32)
    if out.shape != ref.shape:
        raise ModelError(f"runtime output shape {list(out.shape)} differs from the model's {list(ref.shape)}.")
    diff = np.abs(out - ref)
    max_diff = float(diff.max()) if diff.size else 0.0
    lowest_cosine, top1 = _lowest_cosine(ref, out), top_k_agreement(ref, out, k=1)
    if quantized:
        step = float(ref.max() - ref.min()) / 255.0 if ref.size else 0.0
        tolerance = steps * step
        in_steps = max_diff / step if step > 0 else None
        mean_diff = float((out - ref).mean()) / step if step > 0 and ref.size else None
        parity = OutputParity(
            max_diff,
            step,
            tolerance,
            True,
            False,
            in_steps,
            cosine=lowest_cosine,
            top1_agreement=top1,
            mean_diff_in_steps=mean_diff,
            norm_change=_largest_norm_change(ref, out),
            within_steps=max_diff <= tolerance + 1e-12,
            cosine_bound=cosine_bound,
        )
        parity.close = not parity.within_steps and close_to_reference(parity.to_dict(), cosine_bound)
        parity.ok = bool(parity.within_steps or parity.close)
        return parity
    bound = atol + rtol * np.abs(ref)
    tolerance = float(bound.max()) if bound.size else atol
    ok = bool((diff <= bound).all())
    return OutputParity(max_diff, None, tolerance, False, ok, cosine=lowest_cosine, top1_agreement=top1)


def _samples(x: np.ndarray) -> list[np.ndarray]:
    """The samples of an output (its first axis; a 0-D or 1-D output is one sample), flattened."""
    if x.ndim < 2:
        return [x.reshape(-1)]
    return [row.reshape(-1) for row in x]


def _lowest_cosine(ref: np.ndarray, got: np.ndarray) -> float | None:
    """The lowest cosine over the samples."""
    if not ref.size:
        return None
    return min(cosine(r, g) for r, g in zip(_samples(ref), _samples(got), strict=True))


def _largest_norm_change(ref: np.ndarray, got: np.ndarray) -> float | None:
    """The largest ``| |got| / |ref| - 1 |`` over the samples (None when a reference sample is all zero)."""
    if not ref.size:
        return None
    changes = []
    for r, g in zip(_samples(ref), _samples(got), strict=True):
        norm = float(np.linalg.norm(r.astype(np.float64)))
        if norm == 0.0:
            return None
        changes.append(abs(float(np.linalg.norm(g.astype(np.float64))) / norm - 1.0))
    return max(changes)


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
