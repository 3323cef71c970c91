"""Report dataclasses of the measurement package: one model's numbers and its per-layer rows."""

from __future__ import annotations

import dataclasses
import math
from typing import Any


def _jsonable(value: Any) -> Any:
    """Replace non-finite floats (JSON cannot hold them) by strings "inf", "-inf", "nan"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class LayerStats:
    """One layer: its own parameters and nonzeros, its own MACs per inference, weight precision,
    sparsity ``1 - nonzero/params`` and (when estimated) energy per inference in µJ."""

    name: str
    type: str
    params: int
    nonzero_params: int
    macs: int
    weight_bits: int | None
    sparsity: float
    energy_uj: float | None = None
    width: int | None = None
    """Output channels (convolutions) or output features (linear layers): what structured pruning cuts."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class ModelStats:
    """Everything :func:`torchslim.measure.analyze` measures about one model.

    ``macs`` and ``energy_uj`` are per inference (one sample); ``latency_ms`` is the median latency
    of one batch of ``batch_size`` at ``threads`` threads on ``latency_runtime`` (onnxruntime when an
    ONNX file was given, else PyTorch eager); ``latency_eager_ms`` is always PyTorch eager. ``bytes``
    is the size on disk of the saved artifact (None until one is saved). ``accuracy``/``loss`` are
    None without a loader; ``accuracy_samples`` is how many samples they were measured on.
    """

    params: int
    nonzero_params: int
    macs: int
    bytes: int | None
    latency_ms: float | None
    latency_runtime: str | None
    latency_eager_ms: float | None
    batch_size: int | None
    threads: int | None
    accuracy: float | None
    loss: float | None
    energy_uj: float | None
    energy_source: str | None
    layers: list[LayerStats] = dataclasses.field(default_factory=list)
    energy_measured_uj: float | None = None
    energy_measured: str | None = None
    accuracy_samples: int | None = None
    agreement: dict[str, Any] | None = None
    """Agreement with the original model on held-out data (``Agreement.to_dict()``), for a compressed model."""
    kernels: dict[str, Any] | None = None
    """How the quantized layers run on the runtime (``deploy.kernel_census``): integer vs float MAC kernels."""

    @property
    def sparsity(self) -> float:
        return 0.0 if self.params == 0 else 1.0 - self.nonzero_params / self.params

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite floats become strings)."""
        return _jsonable(dataclasses.asdict(self))

    def replace(self, **changes: Any) -> ModelStats:
        return dataclasses.replace(self, **changes)
