"""`Targets`: which modules of a model a step applies to.

A module is selected when it matches any of `names` (exact qualified names, or ``re:<regex>``
matched with ``re.fullmatch``, or a role such as ``role:head``) or any of `types` (class names,
matched along the class's MRO, so ``Conv2d`` also selects subclasses), and matches none of
`exclude` (names, ``re:`` patterns, roles or type names). Empty `names` and `types` mean "every
module with parameters of its own". A pattern that matches nothing is an error, so a typo never
silently selects nothing; the error suggests close module names and, where a name pattern could
not find the model's classifier, the ``role:head`` selector.

Roles (see :func:`find_head`): ``role:head`` is the last layer(s) that map to the model's
outputs, e.g. ``classifier`` of the built-in CNNs, ``_fc`` of EfficientNet-Lite0, so a recipe
written once (``exclude: [role:head]``) keeps the output layer of any model intact.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any

import torch.fx
from torch import nn

from torchslim.core.errors import ConfigError, TargetError, did_you_mean

#: The roles a ``role:<name>`` pattern may name.
ROLES: tuple[str, ...] = ("head",)

#: The attribute a model may set to declare its head (a qualified module name or a list of them).
HEAD_ATTR = "torchslim_head"

#: Layers that map features to outputs: a head is the last of these on every path to the output.
_MAPPING_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.modules.conv._ConvNd)


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


class _OneLevelTracer(torch.fx.Tracer):
    """Traces only the given module's own forward: every submodule call stays one node."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return True


def _last_mapping_layer(module: nn.Module, prefix: str) -> list[str]:
    last = [n for n, m in module.named_modules() if isinstance(m, _MAPPING_TYPES)]
    return [_join(prefix, last[-1])] if last else []


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix and name else prefix or name


def _head_of(module: nn.Module, prefix: str, depth: int = 0) -> list[str]:
    """The head layers inside `module` (qualified with `prefix`), see :func:`find_head`."""
    if isinstance(module, _MAPPING_TYPES):
        return [prefix]
    if depth > 32 or not any(True for _ in module.children()):
        return []
    try:
        graph = _OneLevelTracer().trace(module)
    except Exception:  # noqa: BLE001 - any tracing failure means "cannot see the data flow here"
        return _last_mapping_layer(module, prefix)
    heads: list[str] = []
    seen: set[torch.fx.Node] = set()
    stack = [n for n in graph.nodes if n.op == "output"]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if node.op == "call_module":
            sub = module.get_submodule(str(node.target))
            found = _head_of(sub, _join(prefix, str(node.target)), depth + 1)
            if found:
                heads.extend(h for h in found if h not in heads)
                continue
        stack.extend(node.all_input_nodes)
    return heads


def find_head(model: nn.Module) -> list[str]:
    """The qualified names of the model's head: the last layer(s) that map to its outputs.

    How it is found, in order:

    1. A model may declare it: a ``torchslim_head`` attribute holding a module name or a list of them.
    2. Otherwise the data flow is traced with ``torch.fx``, one module at a time (each submodule
       call is one node, so models whose inner code fx cannot trace still work at the top level):
       walking back from the output, the first ``Linear`` / ``Conv`` on every path is a head layer
       (parameter-free modules, pooling, dropout, reshapes and normalisation layers are passed
       through); when the path reaches a container module, the search continues inside it.
    3. Where a container cannot be traced (e.g. Hugging Face's ``BertModel``), the last ``Linear``
       or ``Conv`` registered inside it is taken (for a BERT encoder that is its pooler, which a
       mean-pooled sentence encoder does not use, so excluding it changes nothing).

    Returns ``[]`` when the model has no ``Linear`` / ``Conv`` on the way to its output.
    """
    declared = getattr(model, HEAD_ATTR, None)
    if declared is not None:
        names = _as_tuple(declared, HEAD_ATTR)
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise TargetError(
                f"{type(model).__name__}.{HEAD_ATTR} names {missing}, which are not modules of the model."
                + did_you_mean(missing[0], [n for n in modules if n])
            )
        return list(names)
    return _head_of(model, "")


def _check_role(pattern: str, field: str) -> None:
    role = pattern[len("role:") :]
    if role not in ROLES:
        raise ConfigError(
            f"Targets.{field}: unknown role {pattern!r}; known: {list(ROLES)}." + did_you_mean(role, ROLES)
        )


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
                elif pattern.startswith("role:"):
                    if field == "types":
                        raise ConfigError(f"Targets.types: {pattern!r} is a role; put it in names or exclude.")
                    _check_role(pattern, field)
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

    def _expand_roles(self, model: nn.Module, field: str) -> tuple[str, ...]:
        """`field`'s patterns with each ``role:`` replaced by the module names it stands for."""
        out: list[str] = []
        for pattern in getattr(self, field):
            if not pattern.startswith("role:"):
                out.append(pattern)
                continue
            found = find_head(model)
            if not found:
                raise TargetError(
                    f"Targets.{field} {pattern!r}: found no Linear or Conv layer on the way to the output of "
                    f"{type(model).__name__}; name the layer instead, or set model.{HEAD_ATTR}."
                )
            out.extend(found)
        return tuple(out)

    def _no_match(self, field: str, pattern: str, model: nn.Module, names: list[str]) -> TargetError:
        hint = did_you_mean(pattern, names)
        if not pattern.startswith("re:"):
            try:
                head = find_head(model)
            except TargetError:
                head = []
            if head and pattern not in head:
                hint += f" The model's head (the layer producing its outputs) is {head}: select it with 'role:head'."
        return TargetError(f"Targets.{field} pattern {pattern!r} matches no module of {type(model).__name__}." + hint)

    def resolve(self, model: nn.Module, *, candidates: Iterable[str] | None = None) -> list[tuple[str, nn.Module]]:
        """Return the selected ``(qualified_name, module)`` pairs in model order.

        `candidates` restricts the search to module names a technique can handle (for example only
        ``Linear``/``Conv2d``). Raises :class:`TargetError` naming any pattern that matched nothing.
        """
        modules = [(n, m) for n, m in model.named_modules() if n]
        module_names = [n for n, _ in modules]
        allowed = set(candidates) if candidates is not None else None
        names, exclude = self._expand_roles(model, "names"), self._expand_roles(model, "exclude")
        for pattern in self.names:
            if not pattern.startswith("role:") and not any(_name_matches(pattern, n) for n in module_names):
                raise self._no_match("names", pattern, model, module_names)
        all_types = set().union(*(_type_names(m) for _, m in modules)) if modules else set()
        for tname in self.types:
            if tname not in all_types:
                raise TargetError(
                    f"Targets.types entry {tname!r} matches no module of {type(model).__name__}."
                    + did_you_mean(tname, sorted(all_types))
                )
        for pattern in self.exclude:
            if pattern.startswith("role:"):
                continue
            if not any(_name_matches(pattern, n) or pattern in _type_names(m) for n, m in modules):
                raise self._no_match("exclude", pattern, model, module_names)
        selected = []
        for name, module in modules:
            if allowed is not None and name not in allowed:
                continue
            if names or self.types:
                hit = any(_name_matches(p, name) for p in names) or bool(_type_names(module) & set(self.types))
            else:
                hit = any(True for _ in module.parameters(recurse=False))
            if not hit:
                continue
            if any(_name_matches(p, name) or p in _type_names(module) for p in exclude):
                continue
            selected.append((name, module))
        return selected
