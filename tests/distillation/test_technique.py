"""The ``distill`` technique: config, registry, handler (who teaches whom), recipe and CLI recipe."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from torchslim.core import TECHNIQUES, Context, DataSplits, Recipe, Step, Targets
from torchslim.core.errors import ConfigError, ModelError
from torchslim.distillation import KD, Distill
from torchslim.distillation.cli import distill_recipe
from torchslim.train import TrainConfig


def test_registered_and_validated():
    assert TECHNIQUES.config_type("distill") is Distill and KD is Distill
    for kwargs, match in [
        ({"temperature": 0}, r"Distill\.temperature=0\.0 is out of range \(0"),
        ({"temperature": -2.0}, r"Distill\.temperature"),
        ({"temperature": float("inf")}, "finite"),
        ({"alpha": 1.2}, r"Distill\.alpha=1\.2 is out of range \[0"),
        ({"features": ["layer1"]}, r"Distill\.features\[0\]"),
        ({"features": ["auto:hnt"]}, "Did you mean 'hint'"),
        ({"feature_loss": "mse"}, r"Distill\.feature_loss"),
        ({"student": "depth:1"}, r"Distill\.student.*>= 2"),
    ]:
        with pytest.raises(ConfigError, match=match):
            Distill(**kwargs)
    with pytest.raises(ConfigError, match="Did you mean 'temperature'"):
        Distill.from_dict({"temprature": 2})
    with pytest.raises(ConfigError, match=r"TrainConfig\.epochs=-1"):
        Distill.from_dict({"train": {"epochs": -1}})
    config = Distill(
        temperature=2.0,
        alpha=0.5,
        features=["auto:attention"],
        student="layers:3",
        train=TrainConfig(epochs=2, lr=0.01),
    )
    yaml_text = Recipe([Step(config)]).to_yaml()
    assert "train:" in yaml_text and "epochs: 2" in yaml_text
    again = Recipe.from_yaml(yaml_text).steps[0].config
    assert again == config and hash(again) == hash(config)
    assert again.train == TrainConfig(epochs=2, lr=0.01)
    assert Distill().train == TrainConfig()  # today's defaults


def test_old_flat_yaml_keeps_working_with_a_warning():
    with pytest.warns(FutureWarning, match="'epochs' is now 'train.epochs'"):
        old = Distill.from_dict({"temperature": 4.0, "alpha": 0.7, "epochs": 2})
    assert old == Distill(temperature=4.0, alpha=0.7, train=TrainConfig(epochs=2))
    with pytest.warns(FutureWarning):
        every = Distill.from_dict(
            {
                "epochs": 3,
                "lr": 0.01,
                "optimizer": "sgd",
                "max_steps": 5,
                "weight_decay": 0.1,
                "schedule": "cosine",
                "warmup_steps": 2,
                "momentum": 0.5,
                "grad_clip": 1.0,
            }
        )
    assert every.train == TrainConfig(
        epochs=3,
        lr=0.01,
        optimizer="sgd",
        max_steps=5,
        weight_decay=0.1,
        schedule="cosine",
        warmup_steps=2,
        momentum=0.5,
        grad_clip=1.0,
    )
    shipped = Recipe.from_yaml(
        "version: 1\nsteps:\n  - technique: distill\n"
        "    config: {temperature: 4.0, alpha: 0.7, epochs: 2, lr: 0.001, schedule: cosine}\n"
    )
    assert shipped.steps[0].config.train == TrainConfig(epochs=2, lr=0.001, schedule="cosine")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the nested form loads without a warning
        assert Distill.from_dict(shipped.steps[0].config.to_dict()) == shipped.steps[0].config


def test_the_context_device_seed_and_run_dir_reach_the_loop(toys, tmp_path, monkeypatch):
    import torchslim.train.loop as loop

    calls = []
    real = loop.train

    def spy(model, loader, **kwargs):
        calls.append(kwargs)
        return real(model, loader, **kwargs)

    monkeypatch.setattr(loop, "train", spy)
    context = Context(
        data=DataSplits(train=toys.image_loader(16, 8)), quiet=True, seed=3, device="cpu:0", run_dir=tmp_path
    )
    config = Distill(train=TrainConfig(epochs=1))
    outcome = TECHNIQUES.handler_for(config)(
        toys.seeded(lambda: toys.ToyCNN(width=4)), config, targets=None, context=context
    )
    assert outcome.info["steps"] == 2 and len(calls) == 1
    assert torch.device(calls[0]["device"]) == torch.device(context.device)
    assert calls[0]["seed"] == 3 and calls[0]["quiet"] is True and calls[0]["run_dir"] == tmp_path / "distill"
    assert calls[0]["config"] == TrainConfig(epochs=1, checkpoint_every=500)


def test_without_student_the_model_learns_from_a_frozen_copy(toys):
    model = toys.seeded(lambda: toys.ToyCNN(width=4))
    start = copy.deepcopy(model)
    context = Context(data=DataSplits(train=toys.image_loader(32, 8)), quiet=True, seed=1)
    config = Distill(train=TrainConfig(epochs=1, lr=1e-2), features=["auto"])
    outcome = TECHNIQUES.handler_for(config)(model, config, targets=None, context=context)
    assert outcome.model is model
    assert outcome.info["teacher"].startswith("a frozen copy")
    assert outcome.info["steps"] == 4 and {p["student"] for p in outcome.info["pairs"]} == {"stem", "blocks"}
    assert not torch.equal(model.classifier.weight, start.classifier.weight)
    assert toys.hook_count(model) == 0 and "torchslim_distill_adapters" not in dict(model.named_children())


def test_without_student_the_original_in_the_context_teaches(toys):
    original = toys.seeded(lambda: toys.ToyCNN(width=8)).eval()
    pruned = toys.seeded(lambda: toys.ToyCNN(width=4), 3)  # e.g. what an earlier pruning step left
    before = {k: v.clone() for k, v in original.state_dict().items()}
    context = Context(data=DataSplits(train=toys.image_loader(32, 8)), quiet=True, teacher=original)
    config = Distill(train=TrainConfig(epochs=1), features=["auto"])
    outcome = TECHNIQUES.handler_for(config)(pruned, config, targets=Targets(names=["classifier"]), context=context)
    assert outcome.model is pruned and outcome.info["teacher"].startswith("context.teacher")
    assert outcome.info["teacher_parameters"] > outcome.info["student_parameters"]
    assert outcome.info["adapter_parameters"] > 0
    assert all(torch.equal(before[k], v) for k, v in original.state_dict().items())
    assert all(p.requires_grad for p in pruned.parameters())  # targets froze the rest only for the step


def test_with_a_student_spec_the_model_is_the_teacher(toys):
    teacher = toys.seeded(lambda: toys.ToyCNN(width=4, depth=5)).eval()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    context = Context(data=DataSplits(train=toys.image_loader(32, 8)), quiet=True)
    config = Distill(student="depth:2", train=TrainConfig(epochs=1), features=["auto"])
    outcome = TECHNIQUES.handler_for(config)(teacher, config, targets=None, context=context)
    student = outcome.model
    assert student is not teacher and len(student.blocks) == 2 and len(teacher.blocks) == 5
    assert outcome.info["student_parameters"] < outcome.info["teacher_parameters"]
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


def test_incompatible_student_fails_before_training(toys):
    teacher = toys.seeded(lambda: toys.ToyCNN(width=4))
    context = Context(data=DataSplits(train=toys.image_loader(16, 8, size=28)), quiet=True)
    config = Distill(student='{"name": "lenet5", "kwargs": {"num_classes": 3}}')
    with pytest.raises(ModelError, match=r"incompatible: teacher logits \(2, 10\), student logits \(2, 3\)"):
        TECHNIQUES.handler_for(config)(teacher, config, targets=None, context=context)
    small = Context(data=DataSplits(train=toys.image_loader(16, 8, size=8)), quiet=True)
    config = Distill(student="lenet5")  # a 28x28 model on 8x8 images
    with pytest.raises(ModelError, match="student LeNet5 cannot run on the training inputs"):
        TECHNIQUES.handler_for(config)(teacher, config, targets=None, context=small)


def test_cli_recipe_through_compress(toys, tmp_path):
    from torchslim.api import compress

    recipe = distill_recipe(student="depth:2", epochs=1, lr=1e-2, temperature=2.0, features=["auto"])
    assert recipe.to_dict()["steps"][0]["config"]["student"] == "depth:2"
    assert recipe.steps[0].config.train == TrainConfig(epochs=1, lr=1e-2)
    with pytest.raises(ConfigError, match="temperature"):
        distill_recipe(student="depth:2", temperature=0)
    teacher = toys.seeded(lambda: toys.ToyCNN(width=4, depth=4)).eval()
    loader = toys.image_loader(32, 8)
    result = compress(teacher, DataSplits(train=loader, test=loader), recipe=recipe, repeats=2, quiet=True)
    assert len(result.model.blocks) == 2 and len(teacher.blocks) == 4
    assert result.report.after["params"] < result.report.before["params"]
    step = result.report.steps[0]
    assert step["technique"] == "distill" and step["info"]["steps"] == 4
