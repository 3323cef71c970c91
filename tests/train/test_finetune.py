"""The ``finetune`` technique: registration, config, and its handler run from a Context."""

from __future__ import annotations

import warnings

import pytest
import torch
import yaml

from torchslim.core import TECHNIQUES, Context, DataSplits, Recipe, Step, Targets
from torchslim.core.errors import ConfigError, DataError
from torchslim.train import FineTune, TrainConfig


def test_finetune_is_registered_under_its_name():
    assert "finetune" in TECHNIQUES.names()
    assert TECHNIQUES.config_type("finetune") is FineTune
    assert TECHNIQUES.name_of(FineTune()) == "finetune"


def test_config_validates_and_round_trips_through_a_recipe():
    with pytest.raises(ConfigError, match=r"TrainConfig\.lr="):
        FineTune.from_dict({"train": {"lr": 0}})
    with pytest.raises(ConfigError, match=r"TrainConfig\.epochs="):
        FineTune(train=TrainConfig(epochs=-2))
    with pytest.raises(ConfigError, match="Did you mean 'train'"):
        FineTune.from_dict({"trian": {"epochs": 2}})
    with pytest.raises(ConfigError, match="Did you mean 'epochs'"):
        FineTune.from_dict({"train": {"epoch": 2}})
    with pytest.raises(ConfigError, match=r"'epochs' is now 'train\.epochs'"):
        FineTune(epochs=2)  # type: ignore[call-arg]  # no copied training fields: one nested train config
    assert FineTune().train == TrainConfig()  # today's defaults
    config = FineTune(train=TrainConfig(epochs=2, lr=0.01, schedule="cosine"))
    text = Recipe([Step(config)]).to_yaml()
    nested = yaml.safe_load(text)["steps"][0]["config"]
    assert set(nested) == {"train"} and nested["train"]["epochs"] == 2 and nested["train"]["schedule"] == "cosine"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the nested form loads without a warning
        again = Recipe.from_yaml(text)
    assert again.steps[0].config == config and hash(again.steps[0].config) == hash(config)


@pytest.mark.parametrize(
    "key",
    ["epochs", "lr", "optimizer", "max_steps", "weight_decay", "schedule", "warmup_steps", "momentum", "grad_clip"],
)
def test_every_old_flat_key_moves_to_train(key):
    values = {
        "epochs": 2,
        "lr": 0.01,
        "optimizer": "sgd",
        "max_steps": 7,
        "weight_decay": 0.1,
        "schedule": "linear",
        "warmup_steps": 3,
        "momentum": 0.5,
        "grad_clip": 1.0,
    }
    assert FineTune.renamed[key] == f"train.{key}"
    with pytest.warns(FutureWarning, match=rf"'{key}' is now 'train.{key}'"):
        config = FineTune.from_dict({key: values[key]})
    assert config.train == TrainConfig(**{key: values[key]})


def test_the_shipped_finetune_recipe_and_old_yaml_load():
    from torchslim.recipes import shipped_recipe

    with pytest.warns(FutureWarning, match="'epochs' is now 'train.epochs'"):
        old = FineTune.from_dict({"epochs": 2, "lr": 0.001})
    assert old == FineTune(train=TrainConfig(epochs=2, lr=0.001))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # flat or nested: the shipped file loads either way
        shipped = shipped_recipe("finetune").steps[0].config
    assert shipped == FineTune(train=TrainConfig(epochs=1, lr=0.001))


def test_the_context_device_seed_and_run_dir_reach_the_loop(toys, tmp_path, monkeypatch):
    import torchslim.train.loop as loop

    calls = []
    real = loop.train

    def spy(model, loader, **kwargs):
        calls.append(kwargs)
        return real(model, loader, **kwargs)

    monkeypatch.setattr(loop, "train", spy)
    loader = torch.utils.data.DataLoader(toys.dataset(n=64), batch_size=32)
    context = Context(data=DataSplits(train=loader), seed=9, device="cpu:0", run_dir=tmp_path, quiet=True, threads=1)
    config = FineTune(train=TrainConfig(epochs=1))
    outcome = TECHNIQUES.handler_for(config)(toys.model(), config, targets=None, context=context)
    assert outcome.info["steps"] == 2 and len(calls) == 1
    assert torch.device(calls[0]["device"]) == torch.device(context.device)
    assert calls[0]["seed"] == 9 and calls[0]["quiet"] is True and calls[0]["run_dir"] == tmp_path / "finetune"
    assert calls[0]["config"] == TrainConfig(epochs=1, checkpoint_every=500)


def test_handler_trains_from_context_data(toys, tmp_path):
    model = toys.model()
    dataset = toys.dataset(n=128)
    loader = torch.utils.data.DataLoader(dataset, batch_size=32, shuffle=True)
    context = Context(data=DataSplits(train=loader), seed=4, run_dir=tmp_path, quiet=True, threads=1)
    config = FineTune(train=TrainConfig(epochs=3, lr=1e-2))
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
    config = FineTune(train=TrainConfig(epochs=1, lr=1e-2))
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
