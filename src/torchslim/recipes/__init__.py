"""Shipped named recipes: YAML files in this package, resolved by name (never by import path)."""

from __future__ import annotations

from importlib import resources

from torchslim.core.errors import UnknownNameError, did_you_mean
from torchslim.core.recipe import Recipe


def shipped_recipe_names() -> list[str]:
    return sorted(p.name[: -len(".yaml")] for p in resources.files(__package__).iterdir() if p.name.endswith(".yaml"))


def shipped_recipe(name: str) -> Recipe:
    """Load the shipped recipe `name` (e.g. ``finetune``)."""
    names = shipped_recipe_names()
    if name not in names:
        raise UnknownNameError(
            f"Unknown recipe {name!r}: not a YAML file and not a shipped recipe; shipped: {names}."
            + did_you_mean(name, names)
        )
    return Recipe.from_yaml(resources.files(__package__).joinpath(f"{name}.yaml").read_text(encoding="utf-8"))
