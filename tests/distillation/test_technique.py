"""The ``distill`` technique: config, registry, handler (who teaches whom), recipe and CLI recipe."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import nn

from torchslim.core import TECHNIQUES, Context, DataSplits, Recipe, Step, Targets
from torchslim.core.errors import ConfigError, ModelError
from torchslim.distillation import KD, Distill
from torchslim.distillation.cli import distill_recipe


@dataclasses.dataclass(frozen=True)
class TeacherContext(Context):
    """The proposed ``Context.teacher`` field (set by ``compress`` to the untouched input model)."""

    teacher: nn.Module | None = None


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
        ({"epochs": -1}, r"Distill\.epochs"),
    ]:
        with pytest.raises(ConfigError, match=match):
            Distill(**kwargs)
    with pytest.raises(ConfigError, match="Did you mean 'temperature'"):
        Distill.from_dict({"temprature": 2})
    config = Distill(temperature=2.0, alpha=0.5, features=["auto:attention"], student="layers:3", epochs=2)
    again = Recipe.from_yaml(Recipe([Step(config)]).to_yaml()).steps[0].config
    assert again == config and hash(again) == hash(config)
    assert config.train_config().epochs == 2


def test_without_student_the_model_learns_from_a_frozen_copy(toys):
    model = toys.seeded(lambda: toys.ToyCNN(width=4))
    start = copy.deepcopy(model)
    context = Context(data=DataSplits(train=toys.image_loader(32, 8)), quiet=True, seed=1)
    config = Distill(epochs=1, lr=1e-2, features=["auto"])
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
    context = TeacherContext(data=DataSplits(train=toys.image_loader(32, 8)), quiet=True, teacher=original)
    config = Distill(epochs=1, features=["auto"])
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
    config = Distill(student="depth:2", epochs=1, features=["auto"])
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
    with pytest.raises(ConfigError, match="temperature"):
        distill_recipe(student="depth:2", temperature=0)
    teacher = toys.seeded(lambda: toys.ToyCNN(width=4, depth=4)).eval()
    loader = toys.image_loader(32, 8)
    result = compress(teacher, DataSplits(train=loader, test=loader), recipe=recipe, repeats=2, quiet=True)
    assert len(result.model.blocks) == 2 and len(teacher.blocks) == 4
    assert result.report.after["params"] < result.report.before["params"]
    step = result.report.steps[0]
    assert step["technique"] == "distill" and step["info"]["steps"] == 4
