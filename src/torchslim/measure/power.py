"""Measured energy from hardware counters, or an explicit "not measurable" — never an invented number.

Counters
--------
* **CPU, Linux RAPL** (``/sys/class/powercap/intel-rapl:*/energy_uj``, also used for AMD on recent
  kernels): cumulative microjoules per domain, wrapping to 0 after ``max_energy_range_uj``. The
  package domains (``name`` = ``package-N``) are summed, plus their ``dram`` subdomains when present
  (DRAM energy is outside the package); ``core``/``uncore`` lie inside the package and ``psys``
  overlaps it, so they are not added (``psys`` is used alone when there is no package domain).
  Since Linux 5.10 ``energy_uj`` is readable by root only; an unreadable counter is reported as such.
* **NVIDIA GPU, NVML** (``pynvml`` from the ``nvidia-ml-py`` package, imported lazily):
  ``nvmlDeviceGetTotalEnergyConsumption`` in millijoules since the driver loaded (Volta and newer).

Method
------
``measure_energy(fn)`` reads the counter over an idle period (``idle_seconds``, default the same as
`seconds`) right before a timed loop of `fn` calls, then::

    P_idle   = E_idle / t_idle
    E_dyn    = E_loop - P_idle * t_loop
    J/inference = E_dyn / (calls * items_per_call)

The counter is sampled at least every ``sample_interval_s`` so a RAPL wraparound between two samples
is undone with ``delta = after - before + max_energy_range_uj`` when ``after < before``. RAPL covers
the whole package: other work on the machine during the loop is included, the idle subtraction only
removes its average level.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_POWERCAP_ROOT = "/sys/class/powercap"


@dataclasses.dataclass(frozen=True)
class EnergyMeasurement:
    """Joules per inference measured from a hardware counter, with what it was derived from."""

    joules_per_inference: float
    source: str  # "rapl" or "nvml"
    inferences: int
    seconds: float
    loop_joules: float
    idle_watts: float
    domains: tuple[str, ...] = ()

    @property
    def uj_per_inference(self) -> float:
        return self.joules_per_inference * 1e6

    @property
    def label(self) -> str:
        return f"measured ({self.source})"

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["uj_per_inference"] = self.uj_per_inference
        return out


@dataclasses.dataclass(frozen=True)
class NotMeasurable:
    """No energy counter could be read here; `reason` says why."""

    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason}


class CounterUnavailable(Exception):
    """Raised internally when a counter cannot be opened or read; becomes a :class:`NotMeasurable`."""


# --------------------------------------------------------------------------------------------------
# RAPL


@dataclasses.dataclass(frozen=True)
class RaplDomain:
    """One RAPL powercap zone: its label (e.g. ``package-0``), directory and wrap range (µJ)."""

    label: str
    path: Path
    max_energy_range_uj: int

    def read_uj(self) -> int:
        try:
            return int((self.path / "energy_uj").read_text().strip())
        except PermissionError:
            raise CounterUnavailable(
                f"{self.path / 'energy_uj'} is not readable (permission denied; since Linux 5.10 RAPL "
                "energy counters are readable by root only)."
            ) from None
        except (OSError, ValueError) as exc:
            raise CounterUnavailable(f"cannot read {self.path / 'energy_uj'}: {exc}") from None


def rapl_delta_uj(before: int, after: int, max_energy_range_uj: int) -> int:
    """Energy between two readings of a counter that wraps to 0 after `max_energy_range_uj`."""
    if after >= before:
        return after - before
    if max_energy_range_uj <= 0:
        raise CounterUnavailable("RAPL counter went backwards and max_energy_range_uj is unknown.")
    return after - before + max_energy_range_uj


_ZONE = re.compile(r"^intel-rapl:\d+$")
_SUBZONE = re.compile(r"^intel-rapl:\d+:\d+$")


def rapl_domains(root: str | Path = DEFAULT_POWERCAP_ROOT) -> list[RaplDomain]:
    """The RAPL domains to sum under the powercap `root` (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise CounterUnavailable(f"no RAPL powercap interface: {root} does not exist.")
    zones = sorted(p for p in root.iterdir() if _ZONE.match(p.name) and (p / "energy_uj").exists())
    if not zones:
        raise CounterUnavailable(f"no RAPL domains (intel-rapl:N/energy_uj) under {root}.")

    def make(path: Path) -> RaplDomain:
        label = (path / "name").read_text().strip() if (path / "name").exists() else path.name
        try:
            max_range = int((path / "max_energy_range_uj").read_text().strip())
        except (OSError, ValueError):
            max_range = 0
        return RaplDomain(label=label, path=path, max_energy_range_uj=max_range)

    top = [make(p) for p in zones]
    packages = [d for d in top if d.label.startswith("package")]
    if not packages:
        psys = [d for d in top if d.label == "psys"]
        return psys[:1] or top
    chosen = list(packages)
    for pkg in packages:
        for sub in sorted(pkg.path.iterdir()):
            if _SUBZONE.match(sub.name) and (sub / "energy_uj").exists():
                dom = make(sub)
                if dom.label == "dram":
                    chosen.append(dom)
    # RAPL exposes dram either as a subzone or (on some servers) as a top-level zone
    chosen.extend(d for d in top if d.label == "dram" and d not in chosen)
    return chosen


class RaplCounter:
    """Accumulates µJ over the chosen RAPL domains, undoing wraparounds between samples."""

    source = "rapl"

    def __init__(self, root: str | Path = DEFAULT_POWERCAP_ROOT) -> None:
        self.domains = rapl_domains(root)
        self._last = [d.read_uj() for d in self.domains]
        self.total_uj = 0

    @property
    def domain_labels(self) -> tuple[str, ...]:
        return tuple(d.label for d in self.domains)

    def sample(self) -> float:
        """Read all domains, add the energy since the previous sample, return the running total (µJ)."""
        now = [d.read_uj() for d in self.domains]
        for dom, before, after in zip(self.domains, self._last, now, strict=True):
            self.total_uj += rapl_delta_uj(before, after, dom.max_energy_range_uj)
        self._last = now
        return float(self.total_uj)

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------------------------------
# NVML


class NvmlCounter:
    """Total GPU energy from NVML (millijoules since driver load), reported in µJ."""

    source = "nvml"

    def __init__(self, index: int = 0) -> None:
        try:
            import pynvml  # type: ignore[import-not-found]  # optional extra (nvidia-ml-py), no type stubs
        except ImportError:
            raise CounterUnavailable(
                "pynvml is not installed (pip install nvidia-ml-py) so the NVML energy counter cannot be read."
            ) from None
        self._nvml = pynvml
        try:
            pynvml.nvmlInit()
        except Exception as exc:  # noqa: BLE001 - NVMLError subclasses, driver missing
            raise CounterUnavailable(f"NVML could not initialise (no NVIDIA driver?): {exc}") from None
        try:
            self._handle = self._handle_for(index)
            self._start = int(pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        except Exception as exc:  # noqa: BLE001
            self.close()
            raise CounterUnavailable(f"NVML total-energy counter unavailable on GPU {index}: {exc}") from None
        self.domain_labels = (f"gpu{index}",)

    def _handle_for(self, index: int) -> Any:
        """Map a torch device index to an NVML handle by UUID (CUDA_VISIBLE_DEVICES may reorder)."""
        pynvml = self._nvml
        try:
            import torch

            uuid = str(torch.cuda.get_device_properties(index).uuid)
            return pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
        except Exception:  # noqa: BLE001 - fall back to the NVML index
            return pynvml.nvmlDeviceGetHandleByIndex(index)

    def sample(self) -> float:
        try:
            now = int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        except Exception as exc:  # noqa: BLE001
            raise CounterUnavailable(f"NVML energy read failed: {exc}") from None
        return float(now - self._start) * 1000.0

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


# --------------------------------------------------------------------------------------------------


def joules_per_inference(
    loop_uj: float, loop_s: float, idle_uj: float, idle_s: float, inferences: int
) -> tuple[float, float]:
    """``(J per inference, idle W)`` from a loop's and an idle period's counter readings."""
    idle_w = (idle_uj * 1e-6) / idle_s if idle_s > 0 else 0.0
    dynamic_j = loop_uj * 1e-6 - idle_w * loop_s
    return dynamic_j / inferences, idle_w


def _open_counter(device: str, powercap_root: str | Path) -> Any:
    if device == "cpu":
        return RaplCounter(powercap_root)
    if device.startswith("cuda"):
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        return NvmlCounter(index)
    raise CounterUnavailable(f"device={device!r}: energy counters exist only for 'cpu' (RAPL) and 'cuda[:N]' (NVML).")


def _idle_then_loop(
    fn: Callable[[], Any],
    counter: Any,
    sync: Callable[[], None],
    *,
    warmup: int,
    idle_seconds: float,
    seconds: float,
    sample_interval_s: float,
    min_calls: int = 1,
) -> tuple[float, float, float, float, int]:
    """Warm up, read the counter over an idle period, then over a loop of `fn` calls (at least
    `seconds` long and at least `min_calls` calls).

    Returns ``(idle_uj, idle_s, loop_uj, loop_s, calls)``; the counter is sampled every
    `sample_interval_s` so wrap-arounds are seen.
    """
    for _ in range(warmup):
        fn()
    sync()
    # idle period
    start_uj = counter.sample()
    t0 = time.perf_counter()
    while (remaining := idle_seconds - (time.perf_counter() - t0)) > 0:
        time.sleep(min(sample_interval_s, remaining))
        counter.sample()
    idle_s = time.perf_counter() - t0
    idle_uj = counter.sample() - start_uj
    # timed loop
    start_uj = counter.sample()
    t0 = last = time.perf_counter()
    calls = 0
    while calls < max(1, min_calls) or time.perf_counter() - t0 < seconds:
        fn()
        sync()
        calls += 1
        now = time.perf_counter()
        if now - last >= sample_interval_s:
            counter.sample()
            last = now
    loop_s = time.perf_counter() - t0
    loop_uj = counter.sample() - start_uj
    return idle_uj, idle_s, loop_uj, loop_s, calls


def _device_sync(device: str) -> Callable[[], None]:
    """``torch.cuda.synchronize`` for a CUDA device that is there, else a no-op."""
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            return torch.cuda.synchronize
    return lambda: None


def measure_energy(
    fn: Callable[[], Any],
    *,
    seconds: float = 2.0,
    device: str = "cpu",
    idle_seconds: float | None = None,
    items_per_call: int = 1,
    warmup: int = 1,
    sample_interval_s: float = 0.25,
    powercap_root: str | Path = DEFAULT_POWERCAP_ROOT,
    min_calls: int = 1,
    counter: Any = None,
) -> EnergyMeasurement | NotMeasurable:
    # long: the checks, the counter's lifetime and the two ways of ending ("not measurable" or a number)
    """Joules per inference of `fn` (one call = `items_per_call` inferences) from RAPL or NVML.

    The timed loop lasts at least `seconds` and at least `min_calls` calls. `counter` is an already
    opened counter (``sample() -> µJ since opened``, ``source``, ``domain_labels``, ``close()``; a
    test's fake) used instead of opening RAPL/NVML for `device`; it is closed afterwards either way.

    Returns :class:`NotMeasurable` with the reason when no counter can be read (no powercap
    interface, permission denied, pynvml or NVML missing) or when the loop used no energy above
    idle. For ``device="cuda"`` each call is followed by ``torch.cuda.synchronize()``.
    """
    if not seconds > 0:
        return NotMeasurable(f"seconds={seconds!r} must be > 0.")
    if items_per_call < 1:
        return NotMeasurable(f"items_per_call={items_per_call!r} must be >= 1.")
    idle_seconds = seconds if idle_seconds is None else idle_seconds
    sync = _device_sync(device)
    try:
        counter = counter if counter is not None else _open_counter(device, powercap_root)
    except CounterUnavailable as exc:
        return NotMeasurable(str(exc))
    try:
        idle_uj, idle_s, loop_uj, loop_s, calls = _idle_then_loop(
            fn,
            counter,
            sync,
            warmup=warmup,
            idle_seconds=idle_seconds,
            seconds=seconds,
            sample_interval_s=sample_interval_s,
            min_calls=min_calls,
        )
    except CounterUnavailable as exc:
        return NotMeasurable(str(exc))
    finally:
        counter.close()
    if loop_uj <= 0:
        return NotMeasurable(f"the {counter.source} counter did not advance during the {loop_s:.3f} s loop.")
    per_inference, idle_w = joules_per_inference(loop_uj, loop_s, idle_uj, idle_s, calls * items_per_call)
    if per_inference <= 0:
        return NotMeasurable(
            f"no energy above idle: loop {loop_uj * 1e-6:.3f} J in {loop_s:.2f} s vs idle {idle_w:.2f} W "
            "(loop too short or the machine too busy)."
        )
    return EnergyMeasurement(
        joules_per_inference=per_inference,
        source=counter.source,
        inferences=calls * items_per_call,
        seconds=loop_s,
        loop_joules=loop_uj * 1e-6,
        idle_watts=idle_w,
        domains=tuple(counter.domain_labels),
    )
