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
from torchslim.core.errors import ConfigError, InputTooLargeError, did_you_mean
from torchslim.core.targets import Targets
from torchslim.core.technique import TECHNIQUES

RECIPE_VERSION = 1
MAX_RECIPE_BYTES = 1_000_000
MAX_YAML_NODES = 100_000  # after alias expansion: a recipe is a few dozen nodes
MAX_YAML_DEPTH = 100


def _expanded_size(root: yaml.Node) -> int:
    """How many nodes `root` holds once every alias is expanded; stops past the limits (alias bombs,
    self-referencing anchors, deep nesting) without expanding anything."""
    sizes: dict[int, int] = {}
    # iterative post-order walk; a node met again while on the stack is a cycle
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 0, False)]
    on_stack: set[int] = set()
    while stack:
        node, depth, done = stack.pop()
        key = id(node)
        if done:
            on_stack.discard(key)
            total = 1 + sum(sizes[id(child)] for child in _children(node))
            if total > MAX_YAML_NODES:
                raise InputTooLargeError(
                    f"Recipe YAML expands to more than {MAX_YAML_NODES:,} nodes (aliases); refusing it."
                )
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in on_stack:
            raise ConfigError("Recipe YAML holds a self-referencing alias; refusing it.")
        if depth > MAX_YAML_DEPTH:
            raise InputTooLargeError(f"Recipe YAML is nested deeper than {MAX_YAML_DEPTH} levels; refusing it.")
        on_stack.add(key)
        stack.append((node, depth, True))
        stack.extend((child, depth + 1, False) for child in _children(node) if id(child) not in sizes)
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def safe_load_bounded(text: str) -> Any:
    """``yaml.safe_load`` with size and alias-expansion limits checked on the node graph before any
    Python object is built (a 471-byte alias bomb is refused in milliseconds)."""
    if len(text) > MAX_RECIPE_BYTES:
        raise InputTooLargeError(f"Recipe YAML is {len(text):,} characters; the limit is {MAX_RECIPE_BYTES:,}.")
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


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
        if not isinstance(name, str):
            raise ConfigError(f"steps[{index}]: 'technique' must be a name, got {type(name).__name__}.")
        if not isinstance(data.get("config") or {}, Mapping):
            raise ConfigError(
                f"steps[{index}] ({name}): 'config' must be a mapping, got {type(data['config']).__name__}."
            )
        try:
            config_type = TECHNIQUES.config_type(name)
            config = config_type.from_dict(data.get("config") or {})
            targets = Targets.from_dict(data["targets"]) if data.get("targets") else None
        except ConfigError as exc:
            raise type(exc)(f"steps[{index}] ({name}): {exc}") from exc
        except (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError) as exc:
            raise ConfigError(f"steps[{index}] ({name}): {type(exc).__name__}: {exc}") from exc
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
            data = safe_load_bounded(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"Recipe is not valid YAML (only plain YAML is accepted, no tags): {exc}") from exc
        except RecursionError as exc:
            raise InputTooLargeError("Recipe YAML is nested too deeply.") from exc
        return cls.from_dict(data)

    @classmethod
    def from_file(cls, path: str | Path) -> Recipe:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"Recipe file {str(path)!r} does not exist.")
        try:
            size = path.stat().st_size
            if size > MAX_RECIPE_BYTES:
                raise InputTooLargeError(
                    f"Recipe file {str(path)!r} is {size:,} bytes; the limit is {MAX_RECIPE_BYTES:,}."
                )
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"Recipe file {str(path)!r} is not UTF-8 text (byte {exc.start}).") from exc
        except OSError as exc:
            raise ConfigError(f"Recipe file {str(path)!r} cannot be read: {exc.strerror or exc}") from exc
        try:
            return cls.from_yaml(text)
        except InputTooLargeError as exc:
            raise InputTooLargeError(f"Recipe file {str(path)!r}: {exc}") from exc
        except ConfigError as exc:
            raise type(exc)(f"Recipe file {str(path)!r}: {exc}") from exc


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply dotted ``key.path=value`` overrides (values parsed as YAML scalars) to a recipe dict."""
    import copy

    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"Override {item!r} must look like steps.0.config.ratio=0.5.")
        path, raw = item.split("=", 1)
        try:
            value = safe_load_bounded(raw)
        except (yaml.YAMLError, RecursionError) as exc:
            raise ConfigError(f"Override {item!r}: bad value: {exc}") from exc
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
