"""`Recipe`: an ordered list of `Step`s that round-trips to YAML.

YAML form (``version: 1``)::

    version: 1
    steps:
      - technique: finetune
        targets: {types: [Linear], exclude: [classifier]}
        config: {epochs: 1, lr: 0.001}

YAML is read with ``yaml.safe_load`` only; technique names resolve through the registry, never
through import paths.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from torchslim.core.config import TechniqueConfig
from torchslim.core.errors import ConfigError, did_you_mean
from torchslim.core.targets import Targets
from torchslim.core.technique import TECHNIQUES

RECIPE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Step:
    """One technique applied to the modules selected by `targets` (all handled modules when None)."""

    config: TechniqueConfig
    targets: Targets | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.config, TechniqueConfig):
            raise ConfigError(f"Step.config must be a technique config, got {type(self.config).__name__}.")
        if self.targets is not None and not isinstance(self.targets, Targets):
            object.__setattr__(self, "targets", Targets.from_dict(self.targets))

    @property
    def technique(self) -> str:
        return TECHNIQUES.name_of(self.config)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"technique": self.technique}
        if self.targets is not None and self.targets.to_dict():
            out["targets"] = self.targets.to_dict()
        out["config"] = self.config.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, index: int = 0) -> Step:
        if not isinstance(data, Mapping):
            raise ConfigError(f"steps[{index}] must be a mapping, got {type(data).__name__}.")
        known = ["technique", "targets", "config"]
        for key in data:
            if key not in known:
                raise ConfigError(f"steps[{index}]: unknown key {key!r}; known: {known}." + did_you_mean(key, known))
        if "technique" not in data:
            raise ConfigError(f"steps[{index}] needs a 'technique' name; known: {TECHNIQUES.names()}.")
        name = data["technique"]
        try:
            config_type = TECHNIQUES.config_type(str(name))
            config = config_type.from_dict(data.get("config") or {})
            targets = Targets.from_dict(data["targets"]) if data.get("targets") else None
        except ConfigError as exc:
            raise type(exc)(f"steps[{index}] ({name}): {exc}") from None
        return cls(config=config, targets=targets)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """An ordered list of steps. Hybrid compression is a longer recipe."""

    steps: tuple[Step, ...] = ()

    def __init__(self, steps: Sequence[Step] = ()) -> None:
        steps = tuple(steps)
        for i, step in enumerate(steps):
            if not isinstance(step, Step):
                raise ConfigError(f"Recipe steps[{i}] must be a Step, got {type(step).__name__}.")
        object.__setattr__(self, "steps", steps)
        self._check_order()

    def _check_order(self) -> None:
        """Reject orders that cannot work: a config class may declare ``must_not_follow`` (technique
        names that must not come before it) and ``order_reason``."""
        names = [s.technique for s in self.steps]
        for i, step in enumerate(self.steps):
            for later in getattr(type(step.config), "must_not_follow", ()):
                if later in names[:i]:
                    raise ConfigError(
                        f"steps[{i}] ({names[i]}) cannot come after {later!r}: "
                        f"{getattr(type(step.config), 'order_reason', 'the earlier step would be undone')}."
                    )

    def to_dict(self) -> dict[str, Any]:
        return {"version": RECIPE_VERSION, "steps": [s.to_dict() for s in self.steps]}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: Any) -> Recipe:
        if isinstance(data, list):
            data = {"version": RECIPE_VERSION, "steps": data}
        if not isinstance(data, Mapping):
            raise ConfigError(f"A recipe must be a mapping with 'steps', got {type(data).__name__}.")
        known = ["version", "steps", "name", "description"]
        for key in data:
            if key not in known:
                raise ConfigError(f"Unknown recipe key {key!r}; known: {known}." + did_you_mean(str(key), known))
        version = data.get("version", RECIPE_VERSION)
        if version != RECIPE_VERSION:
            raise ConfigError(f"Recipe version {version!r} is not supported (expected {RECIPE_VERSION}).")
        steps = data.get("steps")
        if not isinstance(steps, list) or not steps:
            raise ConfigError("A recipe needs a non-empty list 'steps'.")
        return cls([Step.from_dict(s, index=i) for i, s in enumerate(steps)])

    @classmethod
    def from_yaml(cls, text: str) -> Recipe:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"Recipe is not valid YAML (only plain YAML is accepted, no tags): {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def from_file(cls, path: str | Path) -> Recipe:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"Recipe file {str(path)!r} does not exist.")
        return cls.from_yaml(path.read_text(encoding="utf-8"))


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply dotted ``key.path=value`` overrides (values parsed as YAML scalars) to a recipe dict."""
    import copy

    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"Override {item!r} must look like steps.0.config.ratio=0.5.")
        path, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"Override {item!r}: bad value: {exc}") from None
        node: Any = data
        parts = path.split(".")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            key: Any = int(part) if isinstance(node, list) and part.isdigit() else part
            if isinstance(node, list):
                if not isinstance(key, int) or not 0 <= key < len(node):
                    raise ConfigError(f"Override {item!r}: index {part!r} is out of range.")
            elif not isinstance(node, dict):
                raise ConfigError(f"Override {item!r}: {'.'.join(parts[:i])!r} is not a mapping.")
            if last:
                node[key] = value
            else:
                if isinstance(node, dict) and key not in node:
                    node[key] = {}
                node = node[key]
    return data
