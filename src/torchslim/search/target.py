"""What the user asks of an automated compression: :class:`Target` and its command-line form.

A target says how much smaller, faster or cheaper the model must be, relative to the fp32 original
*measured in the same run*, and how much quality it may lose:

* ``size=15``: the saved artifact is at least 15x smaller than the original's (bytes on disk);
* ``latency=0.3``: at most 0.3x of the original's latency on the deployment runtime;
* ``energy=0.1``: at most 0.1x of the original's energy per inference (measure/energy.py);
* ``macs=0.2``: at most 0.2x of the original's multiply-accumulates;
* ``max_drop=1.0``: at most 1 point of accuracy lost (held-out data);
* ``min_cosine=0.99``: for models whose output is an embedding, the mean cosine between the
  original's and the compressed model's outputs stays at or above this instead.

Every goal is a constraint; the search minimises the `primary` one among the models that meet them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Literal

from torchslim.core.config import TechniqueConfig
from torchslim.core.errors import ConfigError, did_you_mean

METRICS = ("size", "latency", "energy", "macs")
"""The cost metrics a target can bound, in the order the primary one is chosen by default."""

Primary = Literal["auto", "size", "latency", "energy", "macs"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Target(TechniqueConfig):
    """A compression goal relative to the fp32 original (see the module docstring).

    Attributes:
        size: times smaller on disk (> 1), or None.
        latency: fraction of the original's latency on the deployment runtime, in (0, 1], or None.
        energy: fraction of the original's estimated energy per inference, in (0, 1], or None.
        macs: fraction of the original's multiply-accumulates, in (0, 1], or None.
        max_drop: accuracy points the model may lose (1.0 = one point), >= 0.
        min_cosine: for embedding models, the lowest mean cosine to the original's outputs, in (0, 1].
        primary: the metric minimised among the models meeting every bound; ``auto`` = the first
            bounded one in the order size, latency, energy, macs (size when none is bounded).
    """

    name: ClassVar[str] = "target"
    summary: ClassVar[str] = "A compression goal: size / latency / energy / MACs bounds and an accuracy budget."

    size: float | None = None
    latency: float | None = None
    energy: float | None = None
    macs: float | None = None
    max_drop: float = 1.0
    min_cosine: float | None = None
    primary: Primary = "auto"

    def validate(self) -> None:
        if self.size is not None:
            self.check("size", self.size, low=1.0, low_inclusive=False)
        for field in ("latency", "energy", "macs"):
            value = getattr(self, field)
            if value is not None:
                self.check(field, value, low=0.0, high=1.0, low_inclusive=False)
        self.check("max_drop", self.max_drop, low=0.0, high=100.0)
        if self.min_cosine is not None:
            self.check("min_cosine", self.min_cosine, low=0.0, high=1.0, low_inclusive=False)
        for field in ("size", "latency", "energy", "macs", "max_drop", "min_cosine"):
            value = getattr(self, field)
            if value is not None and not math.isfinite(value):
                raise ConfigError(f"Target.{field}={value!r} must be finite.")

    @property
    def primary_metric(self) -> str:
        """The metric the search minimises (``primary``, or the first bounded one)."""
        if self.primary != "auto":
            return self.primary
        return next((m for m in METRICS if getattr(self, m) is not None), "size")

    def bounds(self) -> dict[str, float]:
        """Upper bounds on each metric as a fraction of the original (size 15x -> 1/15)."""
        out: dict[str, float] = {}
        if self.size is not None:
            out["size"] = 1.0 / self.size
        for metric in ("latency", "energy", "macs"):
            value = getattr(self, metric)
            if value is not None:
                out[metric] = float(value)
        return out

    def describe(self) -> str:
        """One line: ``size >= 15x smaller, accuracy drop <= 1 point``."""
        parts = []
        if self.size is not None:
            parts.append(f"size >= {self.size:g}x smaller")
        for metric in ("latency", "energy", "macs"):
            value = getattr(self, metric)
            if value is not None:
                parts.append(f"{metric} <= {value:g}x of fp32")
        if self.min_cosine is not None:
            parts.append(f"cosine to the original >= {self.min_cosine:g}")
        else:
            parts.append(f"accuracy drop <= {self.max_drop:g} point{'s' if self.max_drop != 1 else ''}")
        return ", ".join(parts) + f"; minimise {self.primary_metric}"


_ALIASES = {"max-drop": "max_drop", "drop": "max_drop", "cosine": "min_cosine", "min-cosine": "min_cosine"}


def _number(key: str, text: str, *, suffix_x: bool) -> float:
    raw = text.strip().lower()
    if suffix_x and raw.endswith("x"):
        raw = raw[:-1]
    if key == "max_drop" and raw.endswith("%"):
        raw = raw[:-1]
    try:
        return float(raw)
    except ValueError:
        unit = " (e.g. 15x)" if key == "size" else " (e.g. 0.3x)" if suffix_x else ""
        raise ConfigError(f"--target: {key}={text!r} is not a number{unit}.") from None


def parse_target(text: str, *, max_drop: float | None = None) -> Target:
    """``size=15x``, ``latency=0.3x``, ``energy=0.1x``, ``macs=0.2x`` (comma-separated to combine;
    ``max_drop=1``, ``min_cosine=0.99`` and ``primary=size`` may be given too) as a :class:`Target`.

    `max_drop` (accuracy points) applies unless the text sets it. Errors name the parameter.
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("--target must look like size=15x, latency=0.3x, energy=0.1x or macs=0.2x.")
    values: dict[str, Any] = {}
    known = [*METRICS, "max_drop", "min_cosine", "primary"]
    for item in text.split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise ConfigError(
                f"--target: {item.strip()!r} must be metric=value, e.g. size=15x; metrics: {list(METRICS)}."
                + did_you_mean(item.strip(), known)
            )
        key, value = (part.strip() for part in item.split("=", 1))
        key = _ALIASES.get(key.lower(), key.lower())
        if key not in known:
            raise ConfigError(f"--target: unknown parameter {key!r}; known: {known}." + did_you_mean(key, known))
        if key in values:
            raise ConfigError(f"--target: {key} is given twice.")
        values[key] = value if key == "primary" else _number(key, value, suffix_x=key in METRICS)
    if max_drop is not None and "max_drop" not in values:
        values["max_drop"] = float(max_drop)
    if not any(m in values for m in METRICS) and "primary" not in values:
        raise ConfigError(f"--target {text!r} bounds none of {list(METRICS)}; e.g. size=15x.")
    return Target.from_dict(values)  # type: ignore[return-value]  # from_dict returns cls


def drop_points_from_cli(value: float) -> float:
    """The ``--max-drop`` option as accuracy points for a target: values below 1 are fractions as
    everywhere else on the command line (0.01 = 1 point); 1 means one point (a fraction of 1, a 100
    point drop, would accept any model, so it is not a meaningful target)."""
    return float(value) if value >= 1.0 else 100.0 * float(value)
