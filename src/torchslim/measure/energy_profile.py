"""Energy profiles: per-operation energy costs of one class of hardware, loadable from YAML/JSON.

An :class:`EnergyProfile` is a frozen table of the constants of the energy formula of
:mod:`torchslim.measure.energy` (unknown keys rejected). Shipped profiles live in
``src/torchslim/measure/profiles/*.yaml``, each constant with its source in the file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from torchslim.core.errors import ConfigError, UnknownNameError, did_you_mean

COMPUTE_CLASSES = ("fp32", "fp16", "int8", "int4", "int2", "binary")
DEFAULT_PROFILE = "horowitz-45nm"
_PROFILE_DIR = "profiles"


def compute_class(weight_bits: int, activation_bits: int) -> str:
    """The MAC unit a layer needs: the precision class of its wider operand (see module docstring)."""
    for name, value in (("weight_bits", weight_bits), ("activation_bits", activation_bits)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
            raise ConfigError(f"{name}={value!r} must be an integer between 1 and 64.")
    bits = max(weight_bits, activation_bits)
    if bits <= 1:
        return "binary"
    if bits <= 2:
        return "int2"
    if bits <= 4:
        return "int4"
    if bits <= 8:
        return "int8"
    if bits <= 16:
        return "fp16"
    return "fp32"


# --------------------------------------------------------------------------------------------------
# Profiles


@dataclasses.dataclass(frozen=True)
class MacEnergy:
    """Energy of one multiply and one accumulate-add, in picojoules."""

    mult: float
    add: float

    @property
    def total(self) -> float:
        return self.mult + self.add


def _positive(owner: str, field: str, value: Any, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ConfigError(f"{owner}.{field} must be a number, got {value!r}.")
    if value < 0 or (value == 0 and not allow_zero) or math.isinf(value):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{owner}.{field}={value!r} must be a finite number {bound}.")
    return value


def _reject_unknown(owner: str, data: Mapping[str, Any], known: Sequence[str]) -> None:
    for key in data:
        if key not in known:
            raise ConfigError(
                f"Unknown key {key!r} in {owner}; known keys: {list(known)}." + did_you_mean(str(key), list(known))
            )


@dataclasses.dataclass(frozen=True)
class EnergyProfile:
    """Per-operation energy costs of one class of hardware (see the module docstring for the formula).

    ``mac_pj`` maps each of ``fp32, fp16, int8, int4, int2, binary`` to a :class:`MacEnergy`; memory
    costs are per 32-bit word accessed; budgets are in bytes; ``sparse_index_bits`` is the index
    stored with each nonzero weight of a ``sparse_kernel`` layer.
    """

    name: str
    mac_pj: Mapping[str, MacEnergy]
    sram_pj_per_32bit: float
    dram_pj_per_32bit: float
    weight_sram_bytes: int
    activation_sram_bytes: int
    sparse_index_bits: int = 4
    description: str = ""
    source: str = ""
    notes: str = ""

    def __post_init__(self) -> None:
        owner = f"EnergyProfile({self.name!r})"
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("EnergyProfile.name must be a non-empty string.")
        if not isinstance(self.mac_pj, Mapping):
            raise ConfigError(f"{owner}.mac_pj must be a mapping of precision class -> {{mult, add}}.")
        _reject_unknown(f"{owner}.mac_pj", self.mac_pj, COMPUTE_CLASSES)
        missing = [c for c in COMPUTE_CLASSES if c not in self.mac_pj]
        if missing:
            raise ConfigError(f"{owner}.mac_pj lacks the precision classes {missing}.")
        table: dict[str, MacEnergy] = {}
        for cls in COMPUTE_CLASSES:
            entry = self.mac_pj[cls]
            if isinstance(entry, Mapping):
                _reject_unknown(f"{owner}.mac_pj.{cls}", entry, ("mult", "add"))
                if "mult" not in entry or "add" not in entry:
                    raise ConfigError(f"{owner}.mac_pj.{cls} needs both 'mult' and 'add' (pJ).")
                entry = MacEnergy(mult=entry["mult"], add=entry["add"])
            if not isinstance(entry, MacEnergy):
                raise ConfigError(f"{owner}.mac_pj.{cls} must be {{mult: pJ, add: pJ}}, got {entry!r}.")
            _positive(owner, f"mac_pj.{cls}.mult", entry.mult, allow_zero=True)
            _positive(owner, f"mac_pj.{cls}.add", entry.add, allow_zero=True)
            table[cls] = MacEnergy(float(entry.mult), float(entry.add))
        object.__setattr__(self, "mac_pj", types.MappingProxyType(table))
        for field in ("sram_pj_per_32bit", "dram_pj_per_32bit"):
            object.__setattr__(self, field, float(_positive(owner, field, getattr(self, field))))
        for field in ("weight_sram_bytes", "activation_sram_bytes", "sparse_index_bits"):
            value = getattr(self, field)
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{owner}.{field}={value!r} must be an integer >= 0.")
            object.__setattr__(self, field, value)
        for field in ("description", "source", "notes"):
            if not isinstance(getattr(self, field), str):
                raise ConfigError(f"{owner}.{field} must be a string.")

    def __hash__(self) -> int:
        return hash(
            (
                self.name,
                tuple((k, v) for k, v in self.mac_pj.items()),
                self.sram_pj_per_32bit,
                self.dram_pj_per_32bit,
                self.weight_sram_bytes,
                self.activation_sram_bytes,
                self.sparse_index_bits,
            )
        )

    def mac(self, cls: str) -> MacEnergy:
        return self.mac_pj[cls]

    def replace(self, **changes: Any) -> EnergyProfile:
        return dataclasses.replace(self, **changes)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnergyProfile:
        """Build from a plain mapping; unknown keys raise :class:`ConfigError` with a "did you mean"."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"An energy profile must be a mapping, got {type(data).__name__}.")
        _reject_unknown("energy profile", data, cls.field_names())
        required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
        missing = [k for k in required if k not in data]
        if missing:
            raise ConfigError(f"Energy profile {data.get('name', '?')!r} lacks required keys {missing}.")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "mac_pj":
                value = {k: {"mult": v.mult, "add": v.add} for k, v in value.items()}
            out[f.name] = value
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_text(cls, text: str, *, fmt: str = "yaml") -> EnergyProfile:
        try:
            data = json.loads(text) if fmt == "json" else yaml.safe_load(text)
        except (yaml.YAMLError, json.JSONDecodeError) as exc:
            raise ConfigError(f"Energy profile is not valid {fmt.upper()}: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def from_file(cls, path: str | Path) -> EnergyProfile:
        """Load a ``.yaml``/``.yml`` (``yaml.safe_load``) or ``.json`` profile file."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"Energy profile file {str(path)!r} does not exist.")
        fmt = "json" if path.suffix.lower() == ".json" else "yaml"
        try:
            return cls.from_text(path.read_text(encoding="utf-8"), fmt=fmt)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None


def available_profiles() -> list[str]:
    """Names of the energy profiles shipped with torchslim."""
    folder = resources.files("torchslim.measure").joinpath(_PROFILE_DIR)
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_profile(profile: str | Path | EnergyProfile | Mapping[str, Any]) -> EnergyProfile:
    """An :class:`EnergyProfile` from a profile, a shipped name, a YAML/JSON path or a mapping."""
    if isinstance(profile, EnergyProfile):
        return profile
    if isinstance(profile, Mapping):
        return EnergyProfile.from_dict(profile)
    if isinstance(profile, Path) or (
        isinstance(profile, str) and (profile.endswith((".yaml", ".yml", ".json")) or Path(profile).is_file())
    ):
        return EnergyProfile.from_file(profile)
    if isinstance(profile, str):
        names = available_profiles()
        if profile not in names:
            raise UnknownNameError(
                f"Unknown energy profile {profile!r}; shipped: {names} (or pass a YAML/JSON path)."
                + did_you_mean(profile, names)
            )
        text = (
            resources.files("torchslim.measure").joinpath(_PROFILE_DIR).joinpath(f"{profile}.yaml").read_text("utf-8")
        )
        return EnergyProfile.from_text(text)
    raise ConfigError(f"profile must be a name, a path or an EnergyProfile, got {type(profile).__name__}.")
