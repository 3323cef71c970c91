r"""When compressing has paid back: the run's energy against the energy each inference saves.

::

    saving       = E_before - E_after                       [J per inference]
    payback      = ceil(E_run / saving)   if saving > 0     [inferences]
                 = never                  if saving <= 0
                 = 0                      if E_run == 0 and saving > 0

After ``payback`` inferences the compressed model has saved at least the energy that producing it
cost (``payback * saving >= E_run`` and ``(payback - 1) * saving < E_run``).

Two bases, never mixed: the *estimated* saving (the energy model of :mod:`torchslim.measure.energy`:
circuit energy on the profile's accelerator, ``energy_uj``) and, where both models were measured on
a counter (``energy_measured_uj``: RAPL or NVML on the deployment device), the *measured* saving.
Each :class:`Payback` carries the label of its saving and of the run's energy, so a reader sees that
an estimated run cost (CPU time x W/core) is compared with, say, a measured saving.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from torchslim.core.errors import ConfigError
from torchslim.measure.run_energy import UJ_PER_JOULE, RunEnergy


def payback_inferences(run_joules: float, saving_joules_per_inference: float) -> int | None:
    """Inferences after which `saving_joules_per_inference` has earned back `run_joules`; None: never."""
    for name, value in (("run_joules", run_joules), ("saving_joules_per_inference", saving_joules_per_inference)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise ConfigError(f"payback_inferences: {name}={value!r} must be a number.")
    if run_joules < 0:
        raise ConfigError(f"payback_inferences: run_joules={run_joules!r} must be >= 0.")
    if not saving_joules_per_inference > 0 or math.isinf(run_joules):
        return None
    if run_joules == 0:
        return 0
    count = math.ceil(run_joules / saving_joules_per_inference)
    # float division can land one off either way: make the defining inequalities hold exactly
    while count > 1 and (count - 1) * saving_joules_per_inference >= run_joules:
        count -= 1
    while count * saving_joules_per_inference < run_joules:
        count += 1
    return count


@dataclasses.dataclass(frozen=True)
class Payback:
    """The run's energy next to the per-inference saving on one basis, and the payback count."""

    basis: str  # "estimated" or "measured"
    run_joules: float
    run_label: str
    before_uj: float
    after_uj: float
    saving_label: str
    inferences: int | None
    """Inferences to pay back the run; None when the compressed model saves nothing per inference."""

    @property
    def saving_uj(self) -> float:
        return self.before_uj - self.after_uj

    @property
    def pays_back(self) -> bool:
        return self.inferences is not None

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["saving_uj"] = self.saving_uj
        return out


def payback(run: RunEnergy, before_uj: float, after_uj: float, *, basis: str, saving_label: str) -> Payback:
    """A :class:`Payback` from the run and the per-inference energies before and after (µJ)."""
    if basis not in ("estimated", "measured"):
        raise ConfigError(f"payback: basis={basis!r} must be 'estimated' or 'measured'.")
    saving_j = (before_uj - after_uj) / UJ_PER_JOULE
    return Payback(
        basis=basis,
        run_joules=run.joules,
        run_label=run.label,
        before_uj=float(before_uj),
        after_uj=float(after_uj),
        saving_label=saving_label,
        inferences=payback_inferences(run.joules, saving_j),
    )


def _number(stats: Mapping[str, Any], key: str) -> float | None:
    value = stats.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def paybacks_from_stats(run: RunEnergy, before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Payback]:
    """Paybacks from two ``ModelStats.to_dict()``: the estimated one (``energy_uj``) and, when both
    sides were measured on the same counter, the measured one (``energy_measured_uj``)."""
    out: list[Payback] = []
    b, a = _number(before, "energy_uj"), _number(after, "energy_uj")
    if b is not None and a is not None:
        label = str(before.get("energy_source") or "estimate (energy model)")
        out.append(payback(run, b, a, basis="estimated", saving_label=label))
    mb, ma = _number(before, "energy_measured_uj"), _number(after, "energy_measured_uj")
    same_counter = before.get("energy_measured") == after.get("energy_measured")
    if mb is not None and ma is not None and same_counter:
        out.append(payback(run, mb, ma, basis="measured", saving_label=str(before.get("energy_measured"))))
    return out


def energy_section(
    run: RunEnergy,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    *,
    scope: str = "run",
) -> dict[str, Any]:
    """The ``energy`` section of a report: the run's energy, what the run covered (`scope`, e.g.
    "compression: the recipe's steps") and, with before/after stats, its paybacks."""
    section: dict[str, Any] = {"scope": scope, "run": run.to_dict()}
    if before is not None and after is not None:
        section["payback"] = [p.to_dict() for p in paybacks_from_stats(run, before, after)]
    return section


__all__ = ["Payback", "energy_section", "payback", "payback_inferences", "paybacks_from_stats"]
