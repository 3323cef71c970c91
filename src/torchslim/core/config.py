"""Frozen technique configs, validated when built.

A technique is a small frozen dataclass that says *what* to do, plus a handler registered for that
config type (see :mod:`torchslim.core.registry`) that does it. Configs hold no state and no code:
they round-trip through plain dicts (and so YAML) and reject unknown keys with a "did you mean".

Subclasses declare fields with defaults and may override :meth:`validate`::

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class FineTune(TechniqueConfig):
        name: ClassVar[str] = "finetune"
        epochs: int = 1
        lr: float = 1e-3

        def validate(self) -> None:
            check_range("epochs", self.epochs, low=0, low_inclusive=False)
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
import warnings
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal, cast, get_args, get_origin

from torchslim.core.errors import ConfigError, did_you_mean

_FLOAT_TEXT = __import__("re").compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce_bool(label: str, value: Any) -> Any:
    if not isinstance(value, bool):
        raise ConfigError(f"{label} must be true or false, got {value!r}.")
    return value


def _coerce_int(label: str, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{label} must be an integer, got {value!r}.")
    return value


def _coerce_float(label: str, value: Any) -> Any:
    if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 reads "1e-3" (no dot) as a string
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{label} must be a number, got {value!r}.")
    value = float(value)
    if math.isnan(value):
        raise ConfigError(f"{label} must not be NaN.")
    return value


def _coerce_str(label: str, value: Any) -> Any:
    if not isinstance(value, str):
        raise ConfigError(f"{label} must be a string, got {value!r}.")
    return value


_SCALARS: dict[type, Callable[[str, Any], Any]] = {
    bool: _coerce_bool,
    int: _coerce_int,
    float: _coerce_float,
    str: _coerce_str,
}
"""Checks of scalar annotations: (``Owner.field`` label, value) -> the value as the field stores it."""


def _coerce(owner: str, field: str, value: Any, tp: Any) -> Any:
    """Check `value` against the annotation `tp`; accept ints for floats and lists for tuples."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(
                f"{owner}.{field}={value!r} is not one of {list(allowed)}."
                + did_you_mean(str(value), [str(a) for a in allowed])
            )
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(owner, field, value, arg)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{owner}.{field}={value!r} does not match {_type_name(tp)}.")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{owner}.{field} must be a list, got {type(value).__name__} {value!r}.")
        args = get_args(tp)
        item_tp = args[0] if args else Any
        return tuple(_coerce(owner, f"{field}[{i}]", v, item_tp) for i, v in enumerate(value))
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{owner}.{field} must be a mapping, got {type(value).__name__}.")
        return dict(value)
    scalar = _SCALARS.get(tp) if isinstance(tp, type) else None
    if scalar is not None:
        return scalar(f"{owner}.{field}", value)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping) and hasattr(tp, "from_dict"):
            return tp.from_dict(value)
        raise ConfigError(f"{owner}.{field} must be a {tp.__name__} mapping, got {value!r}.")
    if isinstance(tp, type):
        if not isinstance(value, tp):
            raise ConfigError(f"{owner}.{field} must be {tp.__name__}, got {type(value).__name__}.")
    return value


def check_range(
    field: str,
    value: float,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    owner: str = "",
) -> None:
    """Raise :class:`ConfigError` naming `field` when `value` lies outside the interval."""
    name = f"{owner}.{field}" if owner else field
    if low is not None and (value < low or (value == low and not low_inclusive)):
        bracket = "[" if low_inclusive else "("
        hi = "inf" if high is None else high
        closing = "]" if high_inclusive else ")"
        raise ConfigError(f"{name}={value!r} is out of range {bracket}{low}, {hi}{closing}.")
    if high is not None and (value > high or (value == high and not high_inclusive)):
        bracket = "[" if low_inclusive else "("
        lo = "-inf" if low is None else low
        closing = "]" if high_inclusive else ")"
        raise ConfigError(f"{name}={value!r} is out of range {bracket}{lo}, {high}{closing}.")


def _field_default(f: dataclasses.Field[Any]) -> Any:
    """The default value of a dataclass field (calling its factory), or None when it has none."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _move_renamed(cls: type[TechniqueConfig], data: dict[str, Any]) -> dict[str, Any]:
    """Move keys listed in ``cls.renamed`` to their nested path (see :attr:`TechniqueConfig.renamed`)."""
    label = cls.name or cls.__name__
    for old, new in cls.renamed.items():
        if old not in data:
            continue
        value = data.pop(old)
        head, _, rest = new.partition(".")
        if not rest:
            target: dict[str, Any] = data
            key = head
        else:
            section = data.get(head)
            if section is not None and not isinstance(section, Mapping):
                raise ConfigError(f"{label}: key {old!r} is now {new!r}, but {head!r} is not a mapping.")
            target = dict(section or {})
            data[head] = target
            key = rest
        if key in target and target[key] != value:
            raise ConfigError(
                f"{label}: key {old!r} (now {new!r}) is given twice with different values: "
                f"{value!r} and {target[key]!r}."
            )
        target[key] = value
        warnings.warn(f"{label}: key {old!r} is now {new!r}; please update the recipe.", FutureWarning, stacklevel=3)
    return data


def _section_name(cls: type, field: str) -> str:
    """The class name of the config section that field `field` of `cls` holds (``TrainConfig``)."""
    hint = typing.get_type_hints(cls).get(field)
    for candidate in (hint, *get_args(hint)):
        if isinstance(candidate, type) and dataclasses.is_dataclass(candidate):
            return candidate.__name__
    return "<section>"


class _ConfigType(type):
    """Metaclass of :class:`TechniqueConfig`: a keyword that is not a field is a :class:`ConfigError`
    naming it, with its new path when it moved into a section (``Quantize(bits=4)``: "'bits' is now
    'weights.bits'") and a "did you mean" otherwise, instead of Python's bare ``TypeError``."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        fields: set[str] = (
            {f.name for f in dataclasses.fields(cast(Any, cls))} if dataclasses.is_dataclass(cls) else set()
        )
        unknown = [key for key in kwargs if fields and key not in fields]
        if unknown:
            renamed: Mapping[str, str] = getattr(cls, "renamed", {})
            key = unknown[0]
            if key in renamed:
                head, _, rest = renamed[key].partition(".")
                where = f"{head}={_section_name(cls, head)}({rest}=...)" if rest else f"{head}=..."
                raise ConfigError(f"{cls.__name__}({key}=...): {key!r} is now {renamed[key]!r}; pass {where}.")
            raise ConfigError(
                f"{cls.__name__} has no field {key!r}; fields: {sorted(fields)}." + did_you_mean(key, sorted(fields))
            )
        return super().__call__(*args, **kwargs)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TechniqueConfig(metaclass=_ConfigType):
    """Base of every technique config: frozen, keyword-only, validated on construction."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    renamed: ClassVar[Mapping[str, str]] = {}
    """Old flat keys and the nested path that replaced them (``{"epochs": "train.epochs"}``):
    :meth:`from_dict` moves an old key to its new place with a :class:`FutureWarning` naming it,
    so recipe files written before a config was nested keep working."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            default = _field_default(f)
            if isinstance(value, Mapping) and isinstance(default, TechniqueConfig):
                # a partial section (``train: {lr: 0.01}``) starts from this field's own default
                value = {**default.to_dict(), **value}
            coerced = _coerce(type(self).__name__, f.name, value, hints[f.name])
            object.__setattr__(self, f.name, coerced)
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the field when a value is out of range."""

    def check(self, field: str, value: float, **kwargs: Any) -> None:
        check_range(field, value, owner=type(self).__name__, **kwargs)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> TechniqueConfig:
        """Build from a plain mapping; unknown keys raise a "did you mean" :class:`ConfigError`."""
        data = _move_renamed(cls, dict(data or {}))
        known = cls.field_names()
        for key in data:
            if key not in known:
                label = cls.name or cls.__name__
                hint = did_you_mean(key, [*known, *cls.renamed])
                for old, new in cls.renamed.items():
                    hint = hint.replace(repr(old), f"{old!r} (now {new!r})")
                raise ConfigError(f"Unknown key {key!r} for technique {label!r}; known keys: {known}." + hint)
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = list(value)
            elif dataclasses.is_dataclass(value) and hasattr(value, "to_dict"):
                value = value.to_dict()
            out[f.name] = value
        return out

    def replace(self, **changes: Any) -> TechniqueConfig:
        return dataclasses.replace(self, **changes)
