"""One generic registry: technique name -> config type, config type -> handler.

Handlers are found by the *type* of the config (torchao-style dispatch), names only serve YAML and
the CLI. Names never resolve through import paths, so a recipe cannot make torchslim import code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from torchslim.core.errors import ConfigError, UnknownNameError, did_you_mean

C = TypeVar("C")
H = TypeVar("H")


@dataclass(frozen=True)
class Entry(Generic[C, H]):
    name: str
    config_type: type[C] | None
    handler: H


class Registry(Generic[C, H]):
    """Maps names and config types to handlers. `kind` is used in error messages ("technique")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._by_name: dict[str, Entry[C, H]] = {}
        self._by_type: dict[type, Entry[C, H]] = {}

    def register(self, name: str, config_type: type[C] | None, handler: H) -> None:
        """Register `handler` under `name` (and under `config_type` when there is one)."""
        if name in self._by_name and self._by_name[name].config_type is not config_type:
            raise ConfigError(f"{self.kind} name {name!r} is already registered.")
        entry = Entry(name, config_type, handler)
        self._by_name[name] = entry
        if config_type is not None:
            self._by_type[config_type] = entry

    def entry(self, name: str) -> Entry[C, H]:
        """The entry registered under `name`; an unknown name gets a "did you mean"."""
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownNameError(
                f"Unknown {self.kind} {name!r}; known: {sorted(self._by_name)}."
                + did_you_mean(name, list(self._by_name))
            ) from None

    def handles(self, config_type: type[C], *, name: str | None = None) -> Callable[[H], H]:
        """Decorator: ``@TECHNIQUES.handles(FineTune)`` registers the decorated handler."""

        def deco(handler: H) -> H:
            self.register(name or getattr(config_type, "name", "") or config_type.__name__, config_type, handler)
            return handler

        return deco

    def config_type(self, name: str) -> type[C]:
        config_type = self.entry(name).config_type
        if config_type is None:
            raise UnknownNameError(f"{self.kind} {name!r} has no config type.")
        return config_type

    def handler_for(self, config: Any) -> H:
        for klass in type(config).__mro__:
            if klass in self._by_type:
                return self._by_type[klass].handler
        raise UnknownNameError(f"No {self.kind} handler is registered for {type(config).__name__}.")

    def name_of(self, config: Any) -> str:
        for klass in type(config).__mro__:
            if klass in self._by_type:
                return self._by_type[klass].name
        raise UnknownNameError(f"{type(config).__name__} is not a registered {self.kind}.")

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def __iter__(self) -> Iterator[Entry[C, H]]:
        return iter(sorted(self._by_name.values(), key=lambda e: e.name))

    def __contains__(self, name: object) -> bool:
        return name in self._by_name
