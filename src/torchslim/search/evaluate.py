"""Measuring a candidate against the original: quality on held-out data and the four cost metrics.

* **size**: bytes on disk of the artifact :func:`torchslim.io.save` writes (with the recipe in its
  manifest, as ``CompressionResult.save`` does), never a count of parameters;
* **latency**: both models exported once to the deployment runtime (:mod:`torchslim.deploy`,
  onnxruntime by default) and timed in alternating rounds; the ratio is the median over rounds of
  candidate / original (load from other processes on a shared machine hits both alike);
* **energy**: the analytical per-inference estimate of :func:`torchslim.measure.estimate_energy`;
* **MACs**: PyTorch's own flop counter (:func:`torchslim.measure.count_macs`).

Every cost is a fraction of the original's; quality is accuracy (labelled data) or the mean cosine
between the original's and the candidate's outputs (embedding models).
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from torch import nn

from torchslim.core.errors import ModelError
from torchslim.deploy import Deployment, deploy_for_timing
from torchslim.io import saved_bytes
from torchslim.measure import count_macs, estimate_energy, evaluate
from torchslim.measure.agreement import compare_models
from torchslim.measure.latency import LatencyStats, measure_latency


@dataclasses.dataclass
class Costs:
    """Cost metrics of a model as fractions of the original's (1.0 = the same)."""

    size: float
    latency: float
    energy: float
    macs: float
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Baseline:
    """The original model's absolute numbers, measured once per study."""

    quality: float
    bytes: int
    energy_uj: float
    macs: int
    latency_ms: float | None
    metric: str
    latency_runtime: str = "onnxruntime"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def quality_fn(
    loader: Iterable[Any], *, metric: str, reference: nn.Module | None = None, max_batches: int | None = None
) -> Any:
    """A function model -> quality on `loader`: ``accuracy`` or ``cosine`` (mean cosine of the
    outputs to `reference`'s, for embedding models)."""

    def accuracy(model: nn.Module) -> float:
        return float(evaluate(model, loader, max_batches=max_batches).accuracy)

    def cosine(model: nn.Module) -> float:
        if reference is None:
            raise ModelError("quality 'cosine' needs the original model as reference.")
        value = compare_models(reference, model, loader, max_batches=max_batches).cosine
        return float(value) if value is not None else 0.0

    if metric == "accuracy":
        return accuracy
    if metric == "cosine":
        return cosine
    raise ModelError(f"quality metric {metric!r} must be 'accuracy' or 'cosine'.")


class EagerBaseline:
    """The original timed in PyTorch eager (fp32, what the user runs today), with the
    :meth:`Deployment.time` signature the meter's rounds call."""

    def __init__(self, model: nn.Module, example_input: Any) -> None:
        self.model = model
        self.example_input = example_input

    def time(self, *, batch_size: int | None = None, repeats: int = 20, threads: int | None = None) -> LatencyStats:
        return measure_latency(self.model, self.example_input, batch_size=batch_size, repeats=repeats, threads=threads)


class CostMeter:
    """Measures candidates against the original on one runtime (see the module docstring).

    `workdir` holds the exported files (the original's is kept for every comparison). With
    `baseline_runtime="pytorch-eager"` the original is timed in PyTorch eager instead of on `runtime`,
    so latency is a fraction of what the user's fp32 model takes today (candidates still run on
    `runtime`, where they are deployed).
    """

    def __init__(
        self,
        original: nn.Module,
        example_input: Any,
        *,
        workdir: str | Path,
        runtime: str = "onnxruntime",
        latency_batch: int = 1,
        rounds: int = 5,
        repeats: int = 10,
        threads: int = 1,
        baseline_runtime: str | None = None,
    ) -> None:
        self.example_input = example_input
        self.threads = threads
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.runtime = runtime
        self.latency_batch = latency_batch
        self.rounds = rounds
        self.repeats = repeats
        self.base_bytes = saved_bytes(original, config=None)
        self.base_energy = float(estimate_energy(original, example_input).total_uj)
        self.base_macs = int(count_macs(original, example_input).total)
        self.baseline_runtime = baseline_runtime or runtime
        self.base_deployment: Deployment | EagerBaseline
        if self.baseline_runtime == "pytorch-eager":
            self.base_deployment = EagerBaseline(original, example_input)
        elif self.baseline_runtime != runtime:
            raise ModelError(f"baseline_runtime={baseline_runtime!r} must be {runtime!r} or 'pytorch-eager'.")
        else:
            deployment, reason = deploy_for_timing(original, example_input, self.workdir, backend=runtime)
            if deployment is None:
                raise ModelError(f"The original model does not export to {runtime}: {reason}")
            self.base_deployment = deployment
        base = self.base_deployment.time(batch_size=latency_batch, repeats=repeats, threads=threads)
        self.base_latency_ms = base.median_ms

    def measure(self, model: nn.Module, *, config: dict[str, Any] | None = None, precise: bool = True) -> Costs:
        """The candidate's costs as fractions of the original's; an export failure is a ModelError.
        `precise=False` times latency in 2 rounds of 5 calls (a trial whose target does not bound it)."""
        model.eval()
        size_bytes = saved_bytes(model, config=config)
        energy = float(estimate_energy(model, self.example_input).total_uj)
        macs = int(count_macs(model, self.example_input).total)
        with tempfile.TemporaryDirectory(dir=self.workdir, prefix="candidate-") as tmp:
            deployment, reason = deploy_for_timing(model, self.example_input, tmp, backend=self.runtime)
            if deployment is None:
                raise ModelError(f"The candidate does not export to {self.runtime}: {reason}")
            latency = self.latency_ratio(deployment, rounds=None if precise else 2, repeats=None if precise else 5)
        return Costs(
            size=size_bytes / self.base_bytes,
            latency=latency,
            energy=energy / self.base_energy if self.base_energy > 0 else 1.0,
            macs=macs / self.base_macs if self.base_macs > 0 else 1.0,
            bytes=size_bytes,
        )

    def latency_ratio(self, candidate: Deployment, *, rounds: int | None = None, repeats: int | None = None) -> float:
        """Median over rounds of candidate / original median latency; the order alternates per round."""
        ratios = []
        repeats = repeats or self.repeats
        for r in range(rounds or self.rounds):
            pair = (self.base_deployment, candidate) if r % 2 == 0 else (candidate, self.base_deployment)
            times = {
                id(d): d.time(batch_size=self.latency_batch, repeats=repeats, threads=self.threads).median_ms
                for d in pair
            }
            ratios.append(times[id(candidate)] / max(times[id(self.base_deployment)], 1e-9))
        return float(statistics.median(ratios))

    def baseline(self, quality: float, metric: str) -> Baseline:
        return Baseline(
            quality=quality,
            bytes=self.base_bytes,
            energy_uj=self.base_energy,
            macs=self.base_macs,
            latency_ms=self.base_latency_ms,
            metric=metric,
            latency_runtime=self.baseline_runtime,
        )
