"""The ``finetune`` technique: registration, config, and its handler run from a Context."""

from __future__ import annotations

import pytest
import torch

from torchslim.core import TECHNIQUES, Context, DataSplits, Recipe, Step, Targets
from torchslim.core.errors import ConfigError, DataError
from torchslim.train import FineTune, TrainConfig


def test_finetune_is_registered_under_its_name():
    assert "finetune" in TECHNIQUES.names()
    assert TECHNIQUES.config_type("finetune") is FineTune
    assert TECHNIQUES.name_of(FineTune()) == "finetune"


def test_config_validates_and_round_trips_through_a_recipe():
    with pytest.raises(ConfigError, match=r"FineTune\.lr="):
        FineTune(lr=0)
    with pytest.raises(ConfigError, match=r"FineTune\.epochs="):
        FineTune(epochs=-2)
    with pytest.raises(ConfigError, match="Did you mean 'epochs'"):
        FineTune.from_dict({"epoch": 2})
    recipe = Recipe([Step(FineTune(epochs=2, lr=0.01, schedule="cosine"))])
    again = Recipe.from_yaml(recipe.to_yaml())
    assert again.steps[0].config == FineTune(epochs=2, lr=0.01, schedule="cosine")
    assert FineTune(epochs=2).train_config() == TrainConfig(epochs=2)


def test_handler_trains_from_context_data(toys, tmp_path):
    model = toys.model()
    dataset = toys.dataset(n=128)
    loader = torch.utils.data.DataLoader(dataset, batch_size=32, shuffle=True)
    context = Context(data=DataSplits(train=loader), seed=4, run_dir=tmp_path, quiet=True, threads=1)
    config = FineTune(epochs=3, lr=1e-2)
    handler = TECHNIQUES.handler_for(config)
    outcome = handler(model, config, targets=None, context=context)
    assert outcome.model is model
    assert outcome.info["steps"] == 12 and outcome.info["epochs"] == 3
    assert outcome.info["final_loss"] > 0 and outcome.info["resumed_from_step"] is None
    assert not toys.same_weights(model, toys.model())
    assert (tmp_path / "finetune" / "checkpoint" / "latest.json").is_file()

    # a rerun of the same step restores the finished weights instead of training again
    again = handler(toys.model(), config, targets=None, context=context)
    assert again.info["resumed_from_step"] == 12
    assert toys.same_weights(again.model, model)


def test_handler_trains_only_the_targets(toys):
    model = toys.model()
    loader = torch.utils.data.DataLoader(toys.dataset(n=64), batch_size=32)
    context = Context(data=DataSplits(train=loader), quiet=True)
    config = FineTune(epochs=1, lr=1e-2)
    outcome = TECHNIQUES.handler_for(config)(model, config, targets=Targets(names=["3"]), context=context)
    fresh = toys.model()
    assert torch.equal(model[0].weight, fresh[0].weight) and torch.equal(model[0].bias, fresh[0].bias)
    assert not torch.equal(model[3].weight, fresh[3].weight)
    assert all(p.requires_grad for p in model.parameters())  # unfrozen again
    assert outcome.info["trained_parameters"] == 16 * 3 + 3


def test_handler_needs_train_data(toys):
    config = FineTune()
    with pytest.raises(DataError, match="'finetune' needs train data"):
        TECHNIQUES.handler_for(config)(toys.model(), config, targets=None, context=Context())
