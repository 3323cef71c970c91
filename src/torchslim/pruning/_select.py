"""Which layers a pruning step works on, and why the others were skipped."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from torch import nn

from torchslim.core.errors import TargetError
from torchslim.core.targets import Targets

DEFAULT_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.modules.conv._ConvNd)


def _direct(targets: Targets, name: str, module: nn.Module) -> bool:
    """Whether `module` was selected by name or type itself (not as a descendant of a named container)."""
    types = {k.__name__ for k in type(module).__mro__}
    for pattern in targets.names:
        if pattern.startswith("re:"):
            if re.fullmatch(pattern[3:], name):
                return True
        elif pattern == name:
            return True
    return bool(types & set(targets.types))


def select_layers(
    model: nn.Module,
    targets: Targets | None,
    *,
    reason_unsupported: Callable[[str, nn.Module], str | None],
    default_types: tuple[type[nn.Module], ...] = DEFAULT_TYPES,
    technique: str,
) -> tuple[list[tuple[str, nn.Module]], dict[str, str]]:
    """``(handled layers, skipped {name: reason})``.

    Without targets (or targets with only `exclude`), every layer of `default_types` is a
    candidate. With `names` / `types`, every selected leaf is a candidate; a layer selected by its
    own name or type that the technique cannot handle is reported in `skipped`, one reached only as
    a descendant of a selected container is left out quietly. Raises :class:`TargetError` when a
    pattern matches nothing (from :meth:`Targets.resolve`) or when no layer can be handled.
    """
    if targets is None:
        targets = Targets()
    wildcard = not targets.names and not targets.types
    handled: list[tuple[str, nn.Module]] = []
    skipped: dict[str, str] = {}
    if wildcard:
        candidates = [n for n, m in model.named_modules() if n and isinstance(m, default_types)]
        selected = targets.resolve(model, candidates=candidates)
        for name, module in selected:
            reason = reason_unsupported(name, module)
            if reason is None:
                handled.append((name, module))
            else:
                skipped[name] = reason
    else:
        for name, module in targets.resolve(model):
            if any(True for _ in module.children()):
                continue
            reason = reason_unsupported(name, module)
            if reason is None:
                handled.append((name, module))
            elif _direct(targets, name, module):
                skipped[name] = reason
    if not handled:
        where = f"targets {targets.to_dict()}" if targets.to_dict() else "the model"
        detail = "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:5])
        raise TargetError(
            f"{technique}: no layer of {type(model).__name__} that {technique} can handle is selected by {where}"
            + (f" ({detail})." if detail else ".")
        )
    return handled, skipped


def match_per_layer(
    per_layer: dict[str, float], names: Iterable[str], *, field: str, technique: str
) -> dict[str, float]:
    """Resolve a ``{name or 're:regex': value}`` mapping against layer `names` (first key wins).

    Raises :class:`TargetError` naming a key that matches no layer.
    """
    names = list(names)
    out: dict[str, float] = {}
    for key, value in per_layer.items():
        if key.startswith("re:"):
            hits = [n for n in names if re.fullmatch(key[3:], n)]
        else:
            hits = [n for n in names if n == key or n.startswith(key + ".")]
        if not hits:
            from torchslim.core.errors import did_you_mean

            raise TargetError(f"{technique}.{field} key {key!r} matches no prunable layer." + did_you_mean(key, names))
        for n in hits:
            out.setdefault(n, float(value))
    return out
