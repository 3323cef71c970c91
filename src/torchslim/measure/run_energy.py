r"""The energy a whole run used (training, compression, distillation, a lottery level, a search trial).

``with RunEnergyMeter() as meter: ...`` then ``meter.result`` is a :class:`RunEnergy`: joules, Wh,
grams of CO2e at a grid intensity, and, for every part of the figure, *how it was obtained*:

* ``measured (RAPL)``: the CPU package (+ DRAM) counter of ``/sys/class/powercap/intel-rapl*``
  (:class:`~torchslim.measure.power.RaplCounter`: summed domains, wraparounds undone between
  samples). The counter covers the whole package: other processes running at the same time are
  included.
* ``measured (NVML)``: ``nvmlDeviceGetTotalEnergyConsumption`` of each visible NVIDIA GPU (when
  CUDA is available and ``nvidia-ml-py`` can read it), also whole-device.
* ``estimated (CPU time x W/core)``: where no CPU counter can be read, the process's CPU time
  (``os.times()``: user + system, plus that of waited-for child processes) times a per-core power::

      E_cpu [J] = cpu_seconds [core-s] * watts_per_core [W]

  ``watts_per_core`` defaults to :data:`DEFAULT_WATTS_PER_CORE` = 12.0 W, the "Any" CPU of Green
  Algorithms (L. Lannelongue, J. Grealey, M. Inouye, "Green Algorithms: Quantifying the Carbon
  Footprint of Computation", Advanced Science 8(12), 2021; the figure is the ``Any`` row, TDP per
  core, of ``data/latest/TDP_cpu.csv`` of github.com/GreenAlgorithms/green-algorithms-tool). Their
  model is ``t * n_cores * P_core * usage``; process CPU time already is ``t * n_cores * usage``.
  Memory, disk, fans and the power supply are not counted, nor a GPU without NVML.

Emissions: ``grams_co2e = kWh * grid_intensity``, with ``grid_intensity`` in gCO2e/kWh, default
:data:`DEFAULT_GRID_INTENSITY` = 475, the world average Green Algorithms uses (IEA, "Global Energy &
CO2 Status Report 2019"; ``data/latest/CI_aggregated.csv``, row ``WORLD``). Set your own grid's
figure (``--grid-intensity``).

How a figure was obtained is an :class:`EnergyMethod` (an enum), and its label is derived from it:
a part built from CPU time cannot carry a "measured" label, and a measured part cannot carry the
estimate's parameters (:class:`EnergyPart` checks both when built, also when read back from JSON).

Usage (what :func:`torchslim.compress` does around its recipe's steps; a lottery level or a search
trial does the same around its own work)::

    with RunEnergyMeter(grid_intensity=grid_intensity) as meter:
        ...  # the run
    report.energy = energy_section(meter.result, report.before, report.after, scope="compression")

(:func:`torchslim.measure.payback.energy_section` adds the payback counts from the before/after stats.)
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from torchslim.core.errors import ConfigError
from torchslim.measure.power import DEFAULT_POWERCAP_ROOT, CounterUnavailable, NvmlCounter, RaplCounter

DEFAULT_WATTS_PER_CORE = 12.0
"""W per fully busy core: Green Algorithms' "Any" CPU (Lannelongue et al., Advanced Science 2021)."""

DEFAULT_GRID_INTENSITY = 475.0
"""gCO2e per kWh: the world average of Green Algorithms (IEA Global Energy & CO2 Status Report 2019)."""

JOULES_PER_WH = 3600.0
UJ_PER_JOULE = 1e6


class EnergyMethod(enum.Enum):
    """How an energy figure was obtained; the label shown in reports comes from here only."""

    RAPL = "rapl"
    NVML = "nvml"
    CPU_TIME = "cpu-time"

    @property
    def measured(self) -> bool:
        return self is not EnergyMethod.CPU_TIME

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    EnergyMethod.RAPL: "measured (RAPL)",
    EnergyMethod.NVML: "measured (NVML)",
    EnergyMethod.CPU_TIME: "estimated (CPU time x W/core)",
}


def _check_number(owner: str, field: str, value: Any, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{owner}.{field}={value!r} must be a finite number.")
    if value < 0 or (positive and value == 0):
        raise ConfigError(f"{owner}.{field}={value!r} must be {'> 0' if positive else '>= 0'}.")
    return float(value)


@dataclasses.dataclass(frozen=True)
class EnergyPart:
    """The energy of one device over the run, and how it was obtained.

    A :attr:`EnergyMethod.CPU_TIME` part must give ``cpu_seconds`` and ``watts_per_core`` (and its
    joules must be their product); a measured part must give neither.
    """

    method: EnergyMethod
    joules: float
    device: str = "cpu"
    cpu_seconds: float | None = None
    watts_per_core: float | None = None
    domains: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.method, EnergyMethod):
            raise ConfigError(f"EnergyPart.method must be an EnergyMethod, got {self.method!r}.")
        _check_number("EnergyPart", "joules", self.joules)
        estimate_fields = (self.cpu_seconds, self.watts_per_core)
        if self.method.measured:
            if any(v is not None for v in estimate_fields):
                raise ConfigError(
                    f"EnergyPart: a {self.method.label} part has no cpu_seconds / watts_per_core "
                    "(those belong to an estimate)."
                )
            return
        if any(v is None for v in estimate_fields):
            raise ConfigError("EnergyPart: an estimated part needs cpu_seconds and watts_per_core.")
        seconds = _check_number("EnergyPart", "cpu_seconds", self.cpu_seconds)
        watts = _check_number("EnergyPart", "watts_per_core", self.watts_per_core, positive=True)
        if not math.isclose(self.joules, seconds * watts, rel_tol=1e-9, abs_tol=1e-12):
            raise ConfigError(
                f"EnergyPart: joules={self.joules!r} is not cpu_seconds x watts_per_core = {seconds * watts!r}."
            )

    @property
    def label(self) -> str:
        return self.method.label

    @property
    def how(self) -> str:
        """The label and what the figure was derived from."""
        if self.method is EnergyMethod.CPU_TIME:
            return f"{self.label}: {self.cpu_seconds:.1f} core-s x {self.watts_per_core:g} W"
        domains = f" ({', '.join(self.domains)})" if self.domains else ""
        return f"{self.label}{domains}"

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["method"] = self.method.value
        out["label"] = self.label
        out["domains"] = list(self.domains)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnergyPart:
        """Rebuild from :meth:`to_dict` output; ``label`` is ignored (it always follows ``method``)."""
        try:
            method = EnergyMethod(data["method"])
        except (KeyError, ValueError):
            known = [m.value for m in EnergyMethod]
            raise ConfigError(f"EnergyPart.method={data.get('method')!r} must be one of {known}.") from None
        return cls(
            method=method,
            joules=data.get("joules"),  # type: ignore[arg-type]  # checked in __post_init__
            device=str(data.get("device", "cpu")),
            cpu_seconds=data.get("cpu_seconds"),
            watts_per_core=data.get("watts_per_core"),
            domains=tuple(data.get("domains") or ()),
        )


@dataclasses.dataclass(frozen=True)
class RunEnergy:
    """The energy a run used: its parts (one per device), wall time, emissions at a grid intensity."""

    parts: tuple[EnergyPart, ...]
    seconds: float
    grid_intensity: float = DEFAULT_GRID_INTENSITY
    """gCO2e per kWh."""
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.parts or not all(isinstance(p, EnergyPart) for p in self.parts):
            raise ConfigError("RunEnergy.parts must be one or more EnergyPart.")
        _check_number("RunEnergy", "seconds", self.seconds)
        _check_number("RunEnergy", "grid_intensity", self.grid_intensity)

    @property
    def joules(self) -> float:
        return sum(p.joules for p in self.parts)

    @property
    def uj(self) -> float:
        return self.joules * UJ_PER_JOULE

    @property
    def wh(self) -> float:
        return self.joules / JOULES_PER_WH

    @property
    def kwh(self) -> float:
        return self.wh / 1000.0

    @property
    def grams_co2e(self) -> float:
        return self.kwh * self.grid_intensity

    @property
    def measured(self) -> bool:
        """True only when every part was read from a counter."""
        return all(p.method.measured for p in self.parts)

    @property
    def label(self) -> str:
        """The parts' labels, joined: e.g. ``measured (NVML) + estimated (CPU time x W/core)``."""
        return " + ".join(dict.fromkeys(p.label for p in self.parts))

    def to_dict(self) -> dict[str, Any]:
        return {
            "joules": self.joules,
            "wh": self.wh,
            "grams_co2e": self.grams_co2e,
            "grid_intensity": self.grid_intensity,
            "seconds": self.seconds,
            "measured": self.measured,
            "label": self.label,
            "parts": [p.to_dict() for p in self.parts],
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunEnergy:
        """Rebuild from :meth:`to_dict` output; totals and labels are recomputed from the parts."""
        parts = data.get("parts")
        if not isinstance(parts, Sequence) or isinstance(parts, str):
            raise ConfigError("RunEnergy.parts must be a list of parts.")
        return cls(
            parts=tuple(EnergyPart.from_dict(p) for p in parts),
            seconds=data.get("seconds", 0.0),
            grid_intensity=data.get("grid_intensity", DEFAULT_GRID_INTENSITY),
            notes=tuple(data.get("notes") or ()),
        )


# --------------------------------------------------------------------------------------------------
# The meter


class EnergyCounter(Protocol):
    """A cumulative energy counter: :class:`RaplCounter`, :class:`NvmlCounter` or a test's fake."""

    source: str

    def sample(self) -> float:
        """µJ used since the counter was opened (reading it also undoes wraparounds)."""
        ...

    def close(self) -> None: ...


def process_cpu_seconds() -> float:
    """CPU seconds used by this process (all threads) and its waited-for children (``os.times``)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


_METHODS = {"rapl": EnergyMethod.RAPL, "nvml": EnergyMethod.NVML}


def _cuda_device_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


class RunEnergyMeter:
    """Context manager: the energy used between ``__enter__`` and ``__exit__`` as a :class:`RunEnergy`.

    ``cpu_counter`` / ``gpu_counters`` replace the counters the meter would open itself (RAPL under
    `powercap_root`; NVML for each visible CUDA device when `gpu` is True, or None and CUDA is
    available). Without a readable CPU counter the CPU part is estimated from `cpu_time` (default
    :func:`process_cpu_seconds`) x `watts_per_core`. Counters are sampled every `sample_interval_s`
    by a daemon thread (None: only at the start, at the end and on :meth:`sample`), so a counter
    that wraps more than once during a long run is still followed.
    """

    def __init__(
        self,
        *,
        grid_intensity: float | None = None,
        watts_per_core: float | None = None,
        gpu: bool | None = None,
        powercap_root: str | Path = DEFAULT_POWERCAP_ROOT,
        sample_interval_s: float | None = 10.0,
        cpu_counter: EnergyCounter | None = None,
        gpu_counters: Sequence[EnergyCounter] | None = None,
        cpu_time: Callable[[], float] = process_cpu_seconds,
    ) -> None:
        # long: eight keyword options, each checked; the counters are opened on __enter__
        self.grid_intensity = _check_number(
            "RunEnergyMeter", "grid_intensity", DEFAULT_GRID_INTENSITY if grid_intensity is None else grid_intensity
        )
        self.watts_per_core = _check_number(
            "RunEnergyMeter",
            "watts_per_core",
            DEFAULT_WATTS_PER_CORE if watts_per_core is None else watts_per_core,
            positive=True,
        )
        if sample_interval_s is not None:
            _check_number("RunEnergyMeter", "sample_interval_s", sample_interval_s, positive=True)
        self._gpu = gpu
        self._powercap_root = powercap_root
        self._interval = sample_interval_s
        self._given_cpu = cpu_counter
        self._given_gpu = list(gpu_counters) if gpu_counters is not None else None
        self._cpu_time = cpu_time
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._counters: list[tuple[str, EnergyCounter]] = []
        self._start_uj: list[float] = []
        self._notes: list[str] = []
        self._result: RunEnergy | None = None

    # -- counters ----------------------------------------------------------------------------------

    def _open_counters(self) -> list[tuple[str, EnergyCounter]]:
        counters: list[tuple[str, EnergyCounter]] = []
        cpu = self._given_cpu
        if cpu is None:
            try:
                cpu = RaplCounter(self._powercap_root)
            except CounterUnavailable as exc:
                self._notes.append(f"CPU energy estimated from CPU time: {exc}")
        if cpu is not None:
            counters.append(("cpu", cpu))
        if self._given_gpu is not None:
            counters.extend((f"gpu{i}", c) for i, c in enumerate(self._given_gpu))
            return counters
        devices = _cuda_device_count()
        if self._gpu and devices == 0:
            self._notes.append("gpu=True but CUDA is not available: no GPU energy counted")
        wanted = self._gpu if self._gpu is not None else devices > 0
        for index in range(devices if wanted else 0):
            try:
                counters.append((f"gpu{index}", NvmlCounter(index)))
            except CounterUnavailable as exc:
                self._notes.append(f"GPU {index} energy not counted: {exc}")
        return counters

    def sample(self) -> None:
        """Read every counter now (a long run between two wraparounds needs one read per wrap)."""
        with self._lock:
            for _, counter in self._counters:
                counter.sample()

    def _sample_until_stopped(self) -> None:
        assert self._interval is not None
        while not self._stop.wait(self._interval):
            try:
                self.sample()
            except CounterUnavailable as exc:
                self._notes.append(f"a background counter read failed: {exc}")
                return

    # -- context manager ---------------------------------------------------------------------------

    def __enter__(self) -> RunEnergyMeter:
        if self._thread is not None or self._counters:
            raise ConfigError("RunEnergyMeter is not re-entrant: use a new meter for each run.")
        self._result = None
        self._counters = self._open_counters()
        with self._lock:
            self._start_uj = [c.sample() for _, c in self._counters]
        self._start_cpu = self._cpu_time()
        self._start_wall = time.perf_counter()
        if self._interval is not None and self._counters:
            self._stop.clear()
            self._thread = threading.Thread(target=self._sample_until_stopped, name="torchslim-energy", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        wall = time.perf_counter() - self._start_wall
        cpu_seconds = max(0.0, self._cpu_time() - self._start_cpu)
        parts: list[EnergyPart] = []
        try:
            with self._lock:
                ends = [c.sample() for _, c in self._counters]
            for (device, counter), start, end in zip(self._counters, self._start_uj, ends, strict=True):
                method = _METHODS.get(counter.source)
                if method is None:
                    raise ConfigError(f"RunEnergyMeter: unknown counter source {counter.source!r} (rapl or nvml).")
                domains = tuple(getattr(counter, "domain_labels", ()) or ())
                joules = max(0.0, end - start) / UJ_PER_JOULE
                parts.append(EnergyPart(method=method, joules=joules, device=device, domains=domains))
        finally:
            for _, counter in self._counters:
                counter.close()
            self._counters = []
        if not any(p.device == "cpu" for p in parts):
            parts.insert(0, self._cpu_estimate(cpu_seconds))
        self._result = RunEnergy(
            parts=tuple(parts), seconds=wall, grid_intensity=self.grid_intensity, notes=tuple(self._notes)
        )

    def _cpu_estimate(self, cpu_seconds: float) -> EnergyPart:
        return EnergyPart(
            method=EnergyMethod.CPU_TIME,
            joules=cpu_seconds * self.watts_per_core,
            cpu_seconds=cpu_seconds,
            watts_per_core=self.watts_per_core,
        )

    @property
    def result(self) -> RunEnergy:
        """The run's energy; available once the ``with`` block has ended."""
        if self._result is None:
            raise ConfigError("RunEnergyMeter.result is available after the `with` block ends.")
        return self._result


__all__ = [
    "DEFAULT_GRID_INTENSITY",
    "DEFAULT_WATTS_PER_CORE",
    "EnergyCounter",
    "EnergyMethod",
    "EnergyPart",
    "JOULES_PER_WH",
    "RunEnergy",
    "RunEnergyMeter",
    "process_cpu_seconds",
]
