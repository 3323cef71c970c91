"""Quality verdicts: warnings computed from the numbers a report already holds, never guessed.

Each `Verdict` names what was measured (the numbers, the sample count, the runtime) and fires only
when the measurement is there:

* ``quality_drop``: accuracy fell by more than `max_drop` (absolute, 0.02 = 2 points), or, without
  labels, top-1 agreement with the original model fell below ``1 - max_drop``.
* ``near_chance``: the original model's accuracy is within `chance_margin` of ``1 / num_classes``
  (an untrained or broken baseline: every "gain" measured against it means nothing).
* ``calibration_short``: a quantize step calibrated on fewer samples than its config asked for
  (``info.calibration_samples`` vs ``config.calibration_samples``).
* ``low_sqnr``: the compressed model's output SQNR against the original is below `min_sqnr_db`.
* ``larger`` / ``slower``: the compressed model is larger on disk, or slower on the runtime both
  were timed on (latency ratio above `slower_ratio`); ``not_faster``: fewer MACs bought no speed.
* ``float_kernels``: fewer integer multiply-accumulate kernels in the runtime's optimized graph than
  layers quantized with integer weights and inputs: some "quantized" layers compute in float there
  (``after.kernels``, counted by ``deploy.kernel_census``). Weight-only layers are float by design
  and reported as a fact ("info"): smaller on disk, not faster.

Two facts are kept apart from warnings (severity "info"): unstructured sparsity from a pruning
step (dense kernels still compute the zeros) and BatchNorm folding. Zeros that come from rounding
(a quantize step, no pruning step) never produce a sparsity statement.

The thresholds are policy, not measurements: `min_sqnr_db` 10 dB means the output noise power is
a tenth of the signal's; `max_drop` and `chance_margin` are the tolerances a user sets
(``--max-drop``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

#: Default tolerances (see the module docstring: policy choices, not measured values).
DEFAULT_MAX_DROP = 0.02
CHANCE_MARGIN = 0.05
MIN_SQNR_DB = 10.0
SLOWER_RATIO = 1.05


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One statement about a run: `kind` (stable id), `severity` ("warning" or "info"), `message`
    (what was measured, in words) and `measured` (the numbers behind it)."""

    kind: str
    message: str
    severity: str = "warning"
    measured: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if math.isnan(float(value)) else float(value)


def _samples(stats: dict[str, Any], key: str) -> str:
    n = stats.get(key)
    return f" on {n:,} samples" if isinstance(n, int) else ""


def _quality(before: dict[str, Any], after: dict[str, Any], max_drop: float) -> list[Verdict]:
    out: list[Verdict] = []
    a, b = _num(before.get("accuracy")), _num(after.get("accuracy"))
    if a is not None and b is not None:
        if a - b > max_drop:
            out.append(
                Verdict(
                    "quality_drop",
                    f"accuracy fell {100 * (a - b):.2f} points ({100 * a:.2f}% -> {100 * b:.2f}%"
                    f"{_samples(after, 'accuracy_samples')}), more than the allowed {100 * max_drop:.2f} points",
                    measured={"before": a, "after": b, "max_drop": max_drop, "samples": after.get("accuracy_samples")},
                )
            )
        return out
    agreement = after.get("agreement") or {}
    top1 = _num(agreement.get("top1_agreement"))
    if top1 is not None and 1.0 - top1 > max_drop:
        out.append(
            Verdict(
                "quality_drop",
                f"top-1 agreement with the original model is {100 * top1:.2f}%{_samples(agreement, 'samples')} "
                f"(no labels), below the allowed {100 * (1 - max_drop):.2f}%",
                measured={"top1_agreement": top1, "max_drop": max_drop, "samples": agreement.get("samples")},
            )
        )
    return out


def _near_chance(before: dict[str, Any], num_classes: int | None, margin: float) -> list[Verdict]:
    accuracy = _num(before.get("accuracy"))
    if accuracy is None or not num_classes or num_classes < 2:
        return []
    chance = 1.0 / num_classes
    if accuracy > chance + margin:
        return []
    return [
        Verdict(
            "near_chance",
            f"the original model scores {100 * accuracy:.2f}%{_samples(before, 'accuracy_samples')}, within "
            f"{100 * margin:.0f} points of chance ({100 * chance:.2f}% for {num_classes} classes): it looks "
            "untrained, so accuracy changes measured against it mean nothing",
            measured={"accuracy": accuracy, "chance": chance, "num_classes": num_classes},
        )
    ]


def _calibration(steps: list[dict[str, Any]]) -> list[Verdict]:
    out: list[Verdict] = []
    for step in steps:
        asked = (step.get("config") or {}).get("calibration_samples")
        used = (step.get("info") or {}).get("calibration_samples")
        if isinstance(asked, int) and isinstance(used, int) and used < asked:
            out.append(
                Verdict(
                    "calibration_short",
                    f"step {step.get('index')} ({step.get('technique')}) calibrated on {used:,} samples; "
                    f"its config asked for {asked:,} (the calibration split holds no more)",
                    measured={"step": step.get("index"), "asked": asked, "used": used},
                )
            )
    return out


def _sqnr(after: dict[str, Any], min_sqnr_db: float) -> list[Verdict]:
    agreement = after.get("agreement") or {}
    sqnr = _num(agreement.get("sqnr_db"))
    if sqnr is None or sqnr >= min_sqnr_db:
        return []
    return [
        Verdict(
            "low_sqnr",
            f"output SQNR against the original model is {sqnr:.1f} dB{_samples(agreement, 'samples')}, "
            f"below {min_sqnr_db:.0f} dB: the outputs are mostly noise",
            measured={"sqnr_db": sqnr, "min_sqnr_db": min_sqnr_db, "samples": agreement.get("samples")},
        )
    ]


def _size_speed(before: dict[str, Any], after: dict[str, Any], slower_ratio: float) -> list[Verdict]:
    out: list[Verdict] = []
    b0, b1 = _num(before.get("bytes")), _num(after.get("bytes"))
    if b0 and b1 is not None and b1 > b0:
        out.append(
            Verdict(
                "larger",
                f"the compressed model is larger on disk: {b1:,.0f} bytes vs {b0:,.0f} ({b1 / b0:.3f}x)",
                measured={"before": b0, "after": b1},
            )
        )
    runtime = after.get("latency_runtime")
    l0, l1 = _num(before.get("latency_ms")), _num(after.get("latency_ms"))
    if not l0 or l1 is None or runtime != before.get("latency_runtime"):
        return out
    ratio = l1 / l0
    measured = {"before_ms": l0, "after_ms": l1, "ratio": ratio, "runtime": runtime}
    timing = f"on {runtime} (batch {after.get('batch_size')}, {after.get('threads')} threads)"
    macs0, macs1 = _num(before.get("macs")), _num(after.get("macs"))
    if ratio > slower_ratio:
        out.append(
            Verdict(
                "slower",
                f"the compressed model is slower {timing}: {l1:.3f} ms vs {l0:.3f} ms ({ratio:.2f}x)",
                measured=measured,
            )
        )
    elif macs0 and macs1 is not None and macs1 / macs0 < 0.9 and ratio > 0.95:
        out.append(
            Verdict(
                "not_faster",
                f"fewer MACs ({macs1 / macs0:.2f}x) did not make the model faster {timing} (latency {ratio:.2f}x)",
                measured=dict(measured, macs_ratio=macs1 / macs0),
            )
        )
    return out


def _facts(before: dict[str, Any], after: dict[str, Any], steps: list[dict[str, Any]]) -> list[Verdict]:
    out: list[Verdict] = []
    pruned = any("pruning" in str(s.get("technique")) for s in steps)
    n0, n1 = _num(before.get("nonzero_params")), _num(after.get("nonzero_params"))
    m0, m1 = _num(before.get("macs")), _num(after.get("macs"))
    if pruned and n0 and n1 is not None and n1 / n0 < 0.9 and (not m0 or m1 is None or m1 / m0 > 0.95):
        out.append(
            Verdict(
                "unstructured_sparsity",
                f"unstructured sparsity ({n1 / n0:.2f}x non-zero parameters): dense kernels still compute the "
                "zeros, so the gain is bytes on disk, not speed",
                severity="info",
                measured={"nonzero_ratio": n1 / n0},
            )
        )
    folded = [(s.get("index"), (s.get("info") or {}).get("folded_batchnorm") or []) for s in steps]
    for index, pairs in folded:
        if pairs:
            out.append(
                Verdict(
                    "batchnorm_folded",
                    f"step {index}: {len(pairs)} BatchNorm layer(s) folded into the convolution before them",
                    severity="info",
                    measured={"step": index, "folded": len(pairs)},
                )
            )
    return out


def _kernels(after: dict[str, Any]) -> list[Verdict]:
    census = after.get("kernels")
    if not isinstance(census, dict):
        return []
    expected, integer = census.get("integer_activation_layers", 0), census.get("integer_mac_kernels", 0)
    runtime, out = census.get("runtime", "the runtime"), []
    if expected > integer:
        out.append(
            Verdict(
                "float_kernels",
                f"{expected} layers were quantized to integer weights and inputs, but {runtime} runs only {integer} "
                f"integer multiply-accumulate kernels ({census.get('float_mac_kernels', 0)} float ones): "
                f"{expected - integer} quantized layers compute in float there (smaller, not faster).",
                measured=dict(census),
            )
        )
    if census.get("weight_only_layers", 0):
        out.append(
            Verdict(
                "weight_only",
                f"{census['weight_only_layers']} layers are weight-only quantized: stored small, dequantized to "
                f"float kernels on {runtime} (size gain, no integer speed-up).",
                severity="info",
                measured=dict(census),
            )
        )
    return out


def compute_verdicts(
    before: dict[str, Any],
    after: dict[str, Any] | None,
    steps: list[dict[str, Any]] | None = None,
    *,
    num_classes: int | None = None,
    max_drop: float = DEFAULT_MAX_DROP,
    chance_margin: float = CHANCE_MARGIN,
    min_sqnr_db: float = MIN_SQNR_DB,
    slower_ratio: float = SLOWER_RATIO,
) -> list[Verdict]:
    """Every verdict the measured numbers support (see the module docstring), warnings first."""
    steps = steps or []
    out = _near_chance(before, num_classes, chance_margin)
    if after:
        out += _quality(before, after, max_drop) + _sqnr(after, min_sqnr_db) + _calibration(steps)
        out += _size_speed(before, after, slower_ratio) + _kernels(after) + _facts(before, after, steps)
    return sorted(out, key=lambda v: v.severity != "warning")


def warnings_of(verdicts: list[Verdict]) -> list[Verdict]:
    """The verdicts that `strict` turns into a non-zero exit."""
    return [v for v in verdicts if v.severity == "warning"]
