"""`Targets`: which modules of a model a step applies to.

A module is selected when it matches any of `names` (exact qualified names, or ``re:<regex>``
matched with ``re.fullmatch``) or any of `types` (class names, matched along the class's MRO, so
``Conv2d`` also selects subclasses), and matches none of `exclude` (names, ``re:`` patterns or type
names). Empty `names` and `types` mean "every module with parameters of its own". A pattern that
matches nothing is an error, so a typo never silently selects nothing.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any

from torch import nn

from torchslim.core.errors import ConfigError, TargetError, did_you_mean


def _as_tuple(value: Any, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"Targets.{field} must be a list of strings, got {value!r}.")
    return tuple(value)


def _type_names(module: nn.Module) -> set[str]:
    return {k.__name__ for k in type(module).__mro__}


def _name_matches(pattern: str, name: str) -> bool:
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], name) is not None
    return pattern == name or name.startswith(pattern + ".")


@dataclasses.dataclass(frozen=True)
class Targets:
    names: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for field in ("names", "types", "exclude"):
            value = _as_tuple(getattr(self, field), field)
            for pattern in value:
                if pattern.startswith("re:"):
                    try:
                        re.compile(pattern[3:])
                    except re.error as exc:
                        raise ConfigError(f"Targets.{field}: bad regex {pattern!r}: {exc}.") from None
            object.__setattr__(self, field, value)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Targets:
        data = dict(data or {})
        known = ["names", "types", "exclude"]
        for key in data:
            if key not in known:
                raise ConfigError(f"Unknown key {key!r} in targets; known: {known}." + did_you_mean(key, known))
        return cls(**data)

    def to_dict(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in dataclasses.asdict(self).items() if v}

    def resolve(self, model: nn.Module, *, candidates: Iterable[str] | None = None) -> list[tuple[str, nn.Module]]:
        """Return the selected ``(qualified_name, module)`` pairs in model order.

        `candidates` restricts the search to module names a technique can handle (for example only
        ``Linear``/``Conv2d``). Raises :class:`TargetError` naming any pattern that matched nothing.
        """
        modules = [(n, m) for n, m in model.named_modules() if n]
        allowed = set(candidates) if candidates is not None else None
        for pattern in self.names:
            if not any(_name_matches(pattern, n) for n, _ in modules):
                raise TargetError(
                    f"Targets.names pattern {pattern!r} matches no module of {type(model).__name__}."
                    + did_you_mean(pattern, [n for n, _ in modules])
                )
        all_types = set().union(*(_type_names(m) for _, m in modules)) if modules else set()
        for tname in self.types:
            if tname not in all_types:
                raise TargetError(
                    f"Targets.types entry {tname!r} matches no module of {type(model).__name__}."
                    + did_you_mean(tname, sorted(all_types))
                )
        for pattern in self.exclude:
            if not any(_name_matches(pattern, n) or pattern in _type_names(m) for n, m in modules):
                raise TargetError(
                    f"Targets.exclude pattern {pattern!r} matches no module of {type(model).__name__}."
                    + did_you_mean(pattern, [n for n, _ in modules])
                )
        selected = []
        for name, module in modules:
            if allowed is not None and name not in allowed:
                continue
            if self.names or self.types:
                hit = any(_name_matches(p, name) for p in self.names) or bool(_type_names(module) & set(self.types))
            else:
                hit = any(True for _ in module.parameters(recurse=False))
            if not hit:
                continue
            if any(_name_matches(p, name) or p in _type_names(module) for p in self.exclude):
                continue
            selected.append((name, module))
        return selected
