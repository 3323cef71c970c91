import dataclasses
from typing import ClassVar, Literal

import pytest

from torchslim.core import ConfigError, TechniqueConfig


@dataclasses.dataclass(frozen=True, kw_only=True)
class Toy(TechniqueConfig):
    name: ClassVar[str] = "toy"
    ratio: float = 0.5
    epochs: int = 1
    mode: Literal["a", "b"] = "a"
    layers: tuple[str, ...] = ()
    limit: int | None = None

    def validate(self) -> None:
        self.check("ratio", self.ratio, low=0.0, high=1.0, high_inclusive=False)


def test_defaults_and_round_trip():
    cfg = Toy(ratio=0.25, layers=["a", "b"])
    assert cfg.layers == ("a", "b")
    assert Toy.from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict() == {"ratio": 0.25, "epochs": 1, "mode": "a", "layers": ["a", "b"], "limit": None}


def test_frozen():
    cfg = Toy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.ratio = 0.1  # type: ignore[misc]  # assigning a frozen field on purpose


def test_unknown_key_suggests():
    with pytest.raises(ConfigError, match=r"Unknown key 'rato'.*Did you mean 'ratio'"):
        Toy.from_dict({"rato": 0.2})


def test_range_error_names_field():
    with pytest.raises(ConfigError, match=r"Toy.ratio=1.0 is out of range \[0.0, 1.0\)"):
        Toy(ratio=1.0)


def test_type_errors():
    with pytest.raises(ConfigError, match="Toy.epochs must be an integer"):
        Toy(epochs="3")
    with pytest.raises(ConfigError, match="Toy.mode='c' is not one of"):
        Toy(mode="c")
    with pytest.raises(ConfigError, match="must not be NaN"):
        Toy(ratio=float("nan"))


def test_int_accepted_for_float_and_float_int():
    assert Toy(ratio=0).ratio == 0.0
    assert isinstance(Toy(ratio=0).ratio, float)
    assert Toy(epochs=2.0).epochs == 2


def test_keyword_only():
    with pytest.raises(TypeError):
        Toy(0.5)  # type: ignore[misc]  # a positional argument on purpose


def test_yaml_exponent_strings_are_numbers():
    # PyYAML reads 1e-3 (no dot) as a string; float fields accept it
    assert Toy.from_dict({"ratio": "5e-1"}).ratio == 0.5
    with pytest.raises(ConfigError, match="must be a number"):
        Toy.from_dict({"ratio": "half"})


def test_python_keywords_that_moved_into_a_section_name_the_new_place():
    from torchslim.pruning import ChannelPruning
    from torchslim.quantization import Quantize

    with pytest.raises(ConfigError, match=r"'bits' is now 'weights\.bits'; pass weights=WeightQuant\(bits=\.\.\.\)"):
        Quantize(bits=4)  # type: ignore[call-arg]  # the old flat keyword, on purpose
    with pytest.raises(ConfigError, match=r"pass train=TrainConfig\(epochs=\.\.\.\)"):
        ChannelPruning(ratio=0.5, finetune_epochs=1)  # type: ignore[call-arg]  # the old flat keyword, on purpose


def test_an_unknown_python_keyword_is_a_config_error_with_did_you_mean():
    from torchslim.train import TrainConfig

    with pytest.raises(ConfigError, match=r"TrainConfig has no field 'epoch'.*Did you mean 'epochs'"):
        TrainConfig(epoch=1)  # type: ignore[call-arg]  # a typo, on purpose
