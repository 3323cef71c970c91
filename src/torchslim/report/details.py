"""The report's detail tables: per-layer before/after rows and the recipe split into the settings
that differ from each technique's defaults and the defaults themselves."""

from __future__ import annotations

from typing import Any

from torchslim.core.errors import TorchSlimError
from torchslim.core.technique import TECHNIQUES


def _bytes_at_bits(row: dict[str, Any]) -> int | None:
    """A layer's weight bytes at its bit-width: ``params * weight_bits / 8`` (the stored size of dense
    codes; sparse codecs and scales are not counted). A row's own ``stored_bytes`` wins."""
    if isinstance(row.get("stored_bytes"), int):
        return int(row["stored_bytes"])
    params, bits = row.get("params"), row.get("weight_bits")
    if isinstance(params, int) and isinstance(bits, int):
        return (params * bits + 7) // 8
    return None


LAYER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("width", "channels / features"),
    ("params", "params"),
    ("macs", "MACs"),
    ("weight_bits", "bits"),
    ("stored_bytes", "weight bytes"),
    ("energy_uj", "energy (uJ)"),
)


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "energy_uj" and isinstance(value, (int, float)):
        return f"{value:,.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def layer_rows(before: dict[str, Any], after: dict[str, Any] | None) -> tuple[list[str], list[dict[str, Any]]]:
    """``(column labels, rows)`` of the per-layer table: one row per layer in model order, each
    column as ``"before → after"`` (or the one value when unchanged or without an after side).
    Layers removed by the compression read "removed"; energy appears only where measured."""
    b_rows = {r["name"]: r for r in before.get("layers") or [] if isinstance(r, dict) and "name" in r}
    a_rows = {r["name"]: r for r in (after or {}).get("layers") or [] if isinstance(r, dict) and "name" in r}
    names = list(b_rows) + [n for n in a_rows if n not in b_rows]
    has_energy = any(r.get("energy_uj") is not None for r in [*b_rows.values(), *a_rows.values()])
    columns = [(k, label) for k, label in LAYER_COLUMNS if k != "energy_uj" or has_energy]
    rows: list[dict[str, Any]] = []
    for name in names:
        b, a = b_rows.get(name), a_rows.get(name)
        cells: list[str] = []
        for key, _ in columns:
            bv = _bytes_at_bits(b) if b and key == "stored_bytes" else (b or {}).get(key)
            av = _bytes_at_bits(a) if a and key == "stored_bytes" else (a or {}).get(key)
            if after is None or a is None:
                cells.append(_cell(key, bv) + (" → removed" if after is not None and b else ""))
            elif b is None:
                cells.append("new → " + _cell(key, av))
            elif bv == av:
                cells.append(_cell(key, bv))
            else:
                cells.append(f"{_cell(key, bv)} → {_cell(key, av)}")
        kind = (a or b or {}).get("type", "")
        rows.append({"name": name, "type": kind, "cells": cells, "changed": a != b and after is not None})
    return [label for _, label in columns], rows


def _diff(value: Any, default: Any) -> Any:
    """The parts of `value` that differ from `default` (nested dicts compared key by key); None when equal."""
    if isinstance(value, dict) and isinstance(default, dict):
        out = {k: d for k, v in value.items() if (d := _diff(v, default.get(k, object()))) is not None}
        return out or None
    return None if value == default else value


def split_recipe(recipe: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Per step: ``{"technique", "targets", "changed": {...}, "defaults": {...}}``, where `changed`
    holds the settings that differ from the technique's defaults (its config class built without
    arguments) and `defaults` the rest. A technique whose defaults cannot be built shows everything
    as changed."""
    out: list[dict[str, Any]] = []
    for step in (recipe or {}).get("steps") or []:
        config = dict(step.get("config") or {})
        try:
            defaults = TECHNIQUES.config_type(str(step.get("technique"))).from_dict({}).to_dict()
        except (TorchSlimError, TypeError, ValueError):
            defaults = {}
        changed = _diff(config, defaults) or {}
        rest = {k: v for k, v in config.items() if k not in changed}
        out.append(
            {"technique": step.get("technique"), "targets": step.get("targets"), "changed": changed, "defaults": rest}
        )
    return out
