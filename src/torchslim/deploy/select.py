"""Choosing a runtime by measurement: every available backend timed on the user's batch and threads.

:func:`select_backend` exports the model once per available backend (with its input repeated to
the batch size), checks each runtime's output against PyTorch's, then times all of them in
alternating rounds (the order rotates every round, so no backend always runs first after another
one) and keeps, among the backends whose parity check passed, the one with the lowest median.
With a float `baseline` (the model before compression) each backend also times the baseline in
the same rounds; a compressed model slower than its baseline on every backend is a warning, or a
:class:`~torchslim.core.errors.ModelError` with ``strict=True``.
"""

from __future__ import annotations

import dataclasses
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor, nn

from torchslim.core.errors import ConfigError, ModelError
from torchslim.deploy.backend import (
    PARITY_COSINE,
    RuntimeBackend,
    available_backends,
    close_to_reference,
    get_backend,
    unavailable_reason,
)
from torchslim.measure.latency import LatencyStats, check_counts, stats_from_times


@dataclasses.dataclass
class BackendFacts:
    """One backend in a selection: whether it ran, why not, its parity and its latency.

    ``latency`` summarises the per-round medians (its ``median_ms`` is the median of the round
    medians); ``baseline_latency`` the same for the float baseline, when one was given.
    """

    name: str
    available: bool
    reason: str | None = None
    parity: dict[str, Any] | None = None
    parity_ok: bool | None = None
    export: dict[str, Any] | None = None
    latency: LatencyStats | None = None
    baseline_latency: LatencyStats | None = None

    @property
    def usable(self) -> bool:
        """Exported, ran with parity, and timed."""
        return bool(self.parity_ok) and self.latency is not None

    @property
    def speedup_over_baseline(self) -> float | None:
        """Baseline median / this model's median on this backend (> 1: the compressed model is faster)."""
        if self.latency is None or self.baseline_latency is None or self.latency.median_ms <= 0:
            return None
        return self.baseline_latency.median_ms / self.latency.median_ms

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["latency"] = self.latency.to_dict() if self.latency else None
        out["baseline_latency"] = self.baseline_latency.to_dict() if self.baseline_latency else None
        out["usable"] = self.usable
        out["speedup_over_baseline"] = self.speedup_over_baseline
        return out


@dataclasses.dataclass
class Selection:
    """What :func:`select_backend` measured and which backend it chose (``best``; None when no
    backend ran with parity). ``margin`` is the runner-up's median over the winner's (>= 1)."""

    best: str | None
    batch_size: int
    threads: int
    rounds: int
    repeats: int
    backends: list[BackendFacts]
    margin: float | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)

    def facts(self, name: str) -> BackendFacts:
        """The facts of backend `name` (a ConfigError when it was not a candidate)."""
        for item in self.backends:
            if item.name == name:
                return item
        raise ConfigError(f"backend {name!r} was not a candidate; candidates: {[b.name for b in self.backends]}.")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["backends"] = [b.to_dict() for b in self.backends]
        return out


def batch_of(example_input: Any, batch_size: int) -> Any:
    """`example_input` with the first sample of every tensor repeated `batch_size` times."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} must be a positive integer.")

    def repeat(t: Tensor) -> Tensor:
        return t[:1].repeat(batch_size, *([1] * (t.dim() - 1))).contiguous() if t.dim() > 0 else t

    if isinstance(example_input, Tensor):
        return repeat(example_input)
    if isinstance(example_input, Mapping):
        return {k: repeat(v) for k, v in example_input.items()}
    if isinstance(example_input, (tuple, list)) and all(isinstance(t, Tensor) for t in example_input):
        return tuple(repeat(t) for t in example_input)
    raise ConfigError(
        f"example_input must be a tensor, a tuple of tensors or a mapping, got {type(example_input).__name__}."
    )


def _candidates(candidates: Sequence[str] | None) -> list[RuntimeBackend]:
    names = list(candidates) if candidates is not None else sorted(set(available_backends()))
    if not names:
        raise ConfigError("select_backend: no candidate backends.")
    return [get_backend(n) for n in names]


def _failure(exc: Exception) -> str:
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first}"


def _prepare(
    backend: RuntimeBackend,
    models: dict[str, nn.Module],
    inputs: Any,
    directory: Path,
    *,
    require_parity: bool,
    parity_steps: float = 2.0,
    parity_cosine: float | None = PARITY_COSINE,
) -> tuple[BackendFacts, dict[str, Path]]:
    """Export every model for `backend` and check the compressed one's parity; the facts and the
    files to time (the model when its parity passed or is not required; the baseline whenever it
    exported)."""
    reason = unavailable_reason(backend)
    if reason is not None:
        return BackendFacts(backend.name, False, reason), {}
    paths: dict[str, Path] = {}
    facts = BackendFacts(backend.name, True)
    problems = []
    for label, model in models.items():
        path = directory / f"{backend.name}-{label}{backend.suffix}"
        try:
            exported = backend.export(model, path, inputs)
            if label == "model":
                facts.export = exported.to_dict()
                parity = backend.check_parity(model, path, inputs)
                facts.parity = parity.to_dict()
                if facts.parity.get("quantized"):  # the verdict under the bounds this selection used
                    facts.parity.update(
                        _verdict_under(facts.parity, parity_steps, parity_cosine),
                        bound_steps=parity_steps,
                        cosine_bound=parity_cosine,
                    )
                facts.parity_ok = bool(facts.parity["ok"])
                if not facts.parity_ok:
                    problems.append(
                        "parity check failed: the runtime's output differs from PyTorch's"
                        + _how_far(facts.parity, parity_steps, parity_cosine)
                    )
                    if require_parity:
                        continue
            paths[label] = path
        except Exception as exc:  # noqa: BLE001 - a backend that fails is reported with why, the others still run
            problems.append(_failure(exc) if label == "model" else f"{label}: {_failure(exc)}")
    facts.reason = "; ".join(problems) or None
    return facts, paths


def _verdict_under(facts: dict[str, Any], steps: float, cosine_bound: float | None) -> dict[str, Any]:
    """A compressed model's parity verdict (``ok``, ``within_steps``, ``close``) redone under this
    selection's bounds where its parity `facts` give the distance in steps: within `steps` (8-bit steps
    of the output range), or close with `cosine_bound`
    (:func:`~torchslim.deploy.backend.close_to_reference`); the backend's own verdict otherwise."""
    in_steps = facts.get("max_diff_in_steps")
    if not isinstance(in_steps, (int, float)):
        return {"ok": bool(facts.get("ok"))}
    within = bool(in_steps <= steps + 1e-9)
    close = not within and close_to_reference(facts, cosine_bound)
    return {"ok": within or close, "within_steps": within, "close": close}


def _how_far(facts: dict[str, Any], steps: float, cosine_bound: float | None) -> str:
    """`` (N steps off, cosine C, top-1 agreement A, mean difference M steps)`` of failed parity facts,
    what they have of them."""
    parts = []
    if facts.get("max_diff_in_steps") is not None:
        parts.append(f"{facts['max_diff_in_steps']:.2f} steps off, bound {steps:g}")
    if facts.get("cosine") is not None:
        bound = f" (close needs >= {cosine_bound:g})" if cosine_bound is not None and facts.get("quantized") else ""
        parts.append(f"cosine {facts['cosine']:.5f}{bound}")
    if facts.get("top1_agreement") is not None:
        parts.append(f"top-1 agreement {facts['top1_agreement']:.3f}")
    if facts.get("mean_diff_in_steps") is not None:
        parts.append(f"mean difference {facts['mean_diff_in_steps']:+.2f} steps")
    return f" ({', '.join(parts)})" if parts else ""


def _time_rounds(
    jobs: list[tuple[RuntimeBackend, str, Path]], inputs: Any, *, threads: int, rounds: int, warmup: int, repeats: int
) -> dict[tuple[str, str], list[float]]:
    """Per-round medians (ms) of every (backend, model) job, timed in alternating, rotating order."""
    medians: dict[tuple[str, str], list[float]] = {(b.name, label): [] for b, label, _ in jobs}
    for r in range(rounds):
        shift = r % len(jobs)
        for backend, label, path in jobs[shift:] + jobs[:shift]:
            stats = backend.time(path, inputs, warmup=warmup, repeats=repeats, threads=threads)
            medians[(backend.name, label)].append(stats.median_ms)
    return medians


def select_backend(
    model: nn.Module,
    example_input: Any,
    *,
    batch_size: int,
    threads: int,
    candidates: Sequence[str] | None = None,
    baseline: nn.Module | None = None,
    rounds: int = 5,
    warmup: int = 3,
    repeats: int = 10,
    directory: str | Path | None = None,
    strict: bool = False,
    require_parity: bool = True,
    parity_steps: float = 2.0,
    parity_cosine: float | None = PARITY_COSINE,
) -> Selection:
    # long: the public entry point's keyword-only options are one per line; the body is 25 lines
    """Time `model` on every candidate backend (default: every available one) and pick the fastest.

    `example_input`'s first sample is repeated to `batch_size`; every runtime runs `threads`
    threads. Each backend's files go to `directory` (default: a temporary directory, removed
    afterwards). `baseline` is the float model before compression, timed in the same rounds.
    Unavailable backends and failed exports or parity checks are kept in the facts with the reason.
    ``require_parity=False`` times (and may pick) a backend whose parity check failed, for
    measuring only; its facts still say so. A compressed model passes parity within `parity_steps`
    8-bit steps of its output's range (default 2), or when further off but close: every sample's
    cosine >= `parity_cosine` (default :data:`~torchslim.deploy.backend.PARITY_COSINE`; None turns
    the close test off), no offset or scale change and the same top-1
    (:func:`~torchslim.deploy.backend.close_to_reference`; deep int8 networks drift by compounding
    rounding: docs/deploy.md).
    """
    check_counts(warmup, repeats)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads={threads!r} must be a positive integer.")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ConfigError(f"rounds={rounds!r} must be a positive integer.")
    if isinstance(parity_steps, bool) or not isinstance(parity_steps, (int, float)) or not parity_steps > 0:
        raise ConfigError(f"parity_steps={parity_steps!r} must be a positive number.")
    if parity_cosine is not None and (
        isinstance(parity_cosine, bool) or not isinstance(parity_cosine, (int, float)) or not 0 < parity_cosine <= 1
    ):
        raise ConfigError(f"parity_cosine={parity_cosine!r} must be a number in (0, 1], or None.")
    inputs = batch_of(example_input, batch_size)
    backends = _candidates(candidates)
    models = {"model": model} if baseline is None else {"model": model, "baseline": baseline}
    with tempfile.TemporaryDirectory(prefix="torchslim-select-") as tmp:
        where = Path(directory) if directory is not None else Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        prepared = [
            _prepare(
                b,
                models,
                inputs,
                where,
                require_parity=require_parity,
                parity_steps=float(parity_steps),
                parity_cosine=None if parity_cosine is None else float(parity_cosine),
            )
            for b in backends
        ]
        jobs = [(b, label, p) for b, (_, paths) in zip(backends, prepared, strict=True) for label, p in paths.items()]
        medians = (
            _time_rounds(jobs, inputs, threads=threads, rounds=rounds, warmup=warmup, repeats=repeats) if jobs else {}
        )
    facts = [f for f, _ in prepared]
    for item in facts:
        for label in models:
            times = medians.get((item.name, label))
            if times:
                stats = stats_from_times(times, batch_size=batch_size, threads=threads, runtime=item.name)
                setattr(item, "latency" if label == "model" else "baseline_latency", stats)
    return _verdict(
        facts,
        batch_size=batch_size,
        threads=threads,
        rounds=rounds,
        repeats=repeats,
        strict=strict,
        parity=require_parity,
    )


def _verdict(
    facts: list[BackendFacts], *, batch_size: int, threads: int, rounds: int, repeats: int, strict: bool, parity: bool
) -> Selection:
    timed = [f for f in facts if f.latency is not None and (f.parity_ok or not parity)]
    usable = sorted(timed, key=lambda f: f.latency.median_ms if f.latency else np.inf)
    best = usable[0].name if usable else None
    margin = None
    if len(usable) > 1 and usable[0].latency and usable[1].latency and usable[0].latency.median_ms > 0:
        margin = usable[1].latency.median_ms / usable[0].latency.median_ms
    notes = []
    if not usable:
        notes.append("no backend ran with parity: " + "; ".join(f"{f.name}: {f.reason}" for f in facts))
    compared = [f for f in usable if f.speedup_over_baseline is not None]
    if compared and all((f.speedup_over_baseline or 0.0) < 1.0 for f in compared):
        detail = ", ".join(f"{f.name} {f.speedup_over_baseline:.3f}x" for f in compared)
        message = f"the compressed model is slower than its float baseline on every backend ({detail})"
        if strict:
            raise ModelError(f"select_backend(strict=True): {message}.")
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        notes.append(message)
    return Selection(best, batch_size, threads, rounds, repeats, facts, margin, notes)


def _cell(facts: BackendFacts | None) -> str:
    if facts is None or not facts.available:
        return "n/a"
    model = f"{facts.latency.median_ms:.3f}" if facts.latency else "failed"
    if facts.latency and not facts.parity_ok:
        model += " (parity failed)"
    if facts.baseline_latency is None:
        return model
    speed = f" ({facts.speedup_over_baseline:.2f}x)" if facts.speedup_over_baseline else ""
    return f"{model} / {facts.baseline_latency.median_ms:.3f}{speed}"


def markdown_table(selections: Mapping[str, Selection]) -> str:
    """A markdown table of several selections (row label -> selection): per backend the median ms
    of the model (``/`` the baseline's, with the speed-up, when a baseline was timed), and the pick."""
    names = sorted({f.name for s in selections.values() for f in s.backends})
    head = "| model | batch | threads | " + " | ".join(f"{n} ms" for n in names) + " | picked (margin) |"
    lines = [head, "|" + "---|" * (len(names) + 4)]
    for label, sel in selections.items():
        cells = [_cell(next((b for b in sel.backends if b.name == n), None)) for n in names]
        margin = f" ({sel.margin:.2f}x)" if sel.margin else ""
        lines.append(
            f"| {label} | {sel.batch_size} | {sel.threads} | " + " | ".join(cells) + f" | {sel.best}{margin} |"
        )
    return "\n".join(lines)


__all__ = ["BackendFacts", "Selection", "batch_of", "markdown_table", "select_backend"]
