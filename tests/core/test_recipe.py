import dataclasses
from typing import ClassVar

import pytest
import yaml

from torchslim.core import ConfigError, Recipe, Step, Targets, TechniqueConfig, UnknownNameError, apply_overrides
from torchslim.core.technique import TECHNIQUES, StepOutcome


@dataclasses.dataclass(frozen=True, kw_only=True)
class Shrink(TechniqueConfig):
    name: ClassVar[str] = "test-shrink"
    ratio: float = 0.5

    def validate(self) -> None:
        self.check("ratio", self.ratio, low=0.0, high=1.0, high_inclusive=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Polish(TechniqueConfig):
    name: ClassVar[str] = "test-polish"
    must_not_follow: ClassVar[tuple[str, ...]] = ("test-freeze",)
    order_reason: ClassVar[str] = "polishing after freezing undoes nothing"
    steps: int = 1


@dataclasses.dataclass(frozen=True, kw_only=True)
class Freeze(TechniqueConfig):
    name: ClassVar[str] = "test-freeze"


for cls in (Shrink, Polish, Freeze):
    if cls.name not in TECHNIQUES:
        TECHNIQUES.register(cls.name, cls, lambda model, config, *, targets, context: StepOutcome(model=model))


YAML = """
version: 1
steps:
  - technique: test-shrink
    targets: {types: [Linear], exclude: [classifier]}
    config: {ratio: 0.25}
  - technique: test-polish
    config: {steps: 3}
"""


def test_yaml_round_trip():
    recipe = Recipe.from_yaml(YAML)
    assert [s.technique for s in recipe.steps] == ["test-shrink", "test-polish"]
    assert recipe.steps[0].targets == Targets(types=("Linear",), exclude=("classifier",))
    again = Recipe.from_yaml(recipe.to_yaml())
    assert again == recipe
    assert yaml.safe_load(recipe.to_yaml())["steps"][0]["config"] == {"ratio": 0.25}


def test_unknown_technique_suggests():
    with pytest.raises(UnknownNameError, match="Did you mean 'test-shrink'"):
        Recipe.from_dict({"steps": [{"technique": "test-shrnk"}]})


def test_unknown_config_key_names_step():
    with pytest.raises(ConfigError, match=r"steps\[0\] \(test-shrink\).*'rato'.*Did you mean 'ratio'"):
        Recipe.from_dict({"steps": [{"technique": "test-shrink", "config": {"rato": 0.1}}]})


def test_out_of_range_and_wrong_type():
    with pytest.raises(ConfigError, match="ratio=1.5 is out of range"):
        Recipe.from_dict({"steps": [{"technique": "test-shrink", "config": {"ratio": 1.5}}]})
    with pytest.raises(ConfigError, match="must be a number"):
        Recipe.from_dict({"steps": [{"technique": "test-shrink", "config": {"ratio": "half"}}]})


def test_python_object_tag_is_refused():
    evil = "steps:\n  - !!python/object/apply:os.system ['echo pwned']\n"
    with pytest.raises(ConfigError, match="not valid YAML"):
        Recipe.from_yaml(evil)


def test_impossible_order():
    with pytest.raises(ConfigError, match="cannot come after 'test-freeze'"):
        Recipe([Step(Freeze()), Step(Polish())])
    Recipe([Step(Polish()), Step(Freeze())])


def test_empty_and_bad_shapes():
    with pytest.raises(ConfigError, match="non-empty list 'steps'"):
        Recipe.from_dict({"version": 1, "steps": []})
    with pytest.raises(ConfigError, match="version"):
        Recipe.from_dict({"version": 2, "steps": [{"technique": "test-freeze"}]})
    with pytest.raises(ConfigError, match="unknown key 'tecnique'"):
        Recipe.from_dict({"steps": [{"tecnique": "test-freeze"}]})


def test_overrides():
    data = Recipe.from_yaml(YAML).to_dict()
    changed = apply_overrides(data, ["steps.0.config.ratio=0.75", "steps.1.config.steps=5"])
    recipe = Recipe.from_dict(changed)
    assert recipe.steps[0].config.ratio == 0.75
    assert recipe.steps[1].config.steps == 5
    assert data["steps"][0]["config"]["ratio"] == 0.25
    with pytest.raises(ConfigError, match="out of range"):
        apply_overrides(data, ["steps.9.config.ratio=0.1"])
    with pytest.raises(ConfigError, match="must look like"):
        apply_overrides(data, ["steps.0.config.ratio"])
