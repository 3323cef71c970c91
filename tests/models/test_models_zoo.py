"""The model table, build_model / specs / example inputs, and the small from-scratch models."""

from __future__ import annotations

import copy
import dataclasses
import json
import sys

import pytest
import torch
import torch.fx
from torch import nn

from torchslim.core.errors import ConfigError, ModelError, UnknownNameError
from torchslim.core.targets import Targets
from torchslim.models import (
    MODELS,
    FashionResNet,
    ModelInfo,
    build_from_spec,
    build_model,
    example_input,
    get_model_spec,
    model_info,
    set_model_spec,
)
from torchslim.models._deps import IMPORT_NAMES

SMALL = ["lenet-300-100", "lenet5", "fmnist-cnn", "fmnist-resnet"]
SMALL_PARAMS = {"lenet-300-100": 266_610, "lenet5": 61_706, "fmnist-cnn": 421_642, "fmnist-resnet": 174_970}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# ---------------------------------------------------------------- the table


def test_table_is_consistent():
    assert set(MODELS) == {"lenet-300-100", "lenet5", "fmnist-cnn", "fmnist-resnet", "efficientnet-lite0", "minilm-l6"}
    for name, info in MODELS.items():
        assert isinstance(info, ModelInfo) and info.name == name and model_info(name) is info
        assert info.input_kind in ("image", "text")
        assert (info.input_shape is None) == (info.input_kind == "text")
        assert info.default_dataset in ("fashion-mnist", "tweets", None)
        assert info.description and callable(info.builder) and info.builder.__doc__
        assert all(pkg in IMPORT_NAMES for pkg in info.requires)
    assert MODELS["efficientnet-lite0"].input_shape == (3, 224, 224)
    assert MODELS["efficientnet-lite0"].num_classes == 1000
    assert MODELS["minilm-l6"].default_dataset == "tweets"
    with pytest.raises(dataclasses.FrozenInstanceError):
        MODELS["lenet5"].num_classes = 3  # type: ignore[misc]  # the frozen dataclass refuses this on purpose


def test_kwarg_names_come_from_the_builders():
    assert MODELS["fmnist-cnn"].kwarg_names() == ("channels", "hidden")
    assert MODELS["fmnist-resnet"].kwarg_names() == ("widths", "blocks")
    assert MODELS["lenet5"].kwarg_names() == ()


# ---------------------------------------------------------------- small models


@pytest.mark.parametrize("name", SMALL)
def test_small_model_param_count_and_forward(name):
    model = build_model(name)
    assert n_params(model) == SMALL_PARAMS[name]
    assert not model.training, "build_model returns eval mode"
    x = example_input(name, batch_size=3)
    assert x.shape == (3, 1, 28, 28) and x.dtype == torch.float32
    with torch.no_grad():
        assert model(x).shape == (3, 10)
    other = build_model(name, num_classes=7)
    with torch.no_grad():
        assert other(x).shape == (3, 7)


def test_lenet_300_100_layers():
    model = build_model("lenet-300-100")
    linears = [(n, m.in_features, m.out_features) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert linears == [("fc1", 784, 300), ("fc2", 300, 100), ("classifier", 100, 10)]


def test_fmnist_cnn_layers():
    model = build_model("fmnist-cnn")
    convs = [
        (n, m.in_channels, m.out_channels, m.kernel_size, m.padding)
        for n, m in model.named_modules()
        if isinstance(m, nn.Conv2d)
    ]
    assert convs == [("features.conv1", 1, 32, (3, 3), (1, 1)), ("features.conv2", 32, 64, (3, 3), (1, 1))]
    assert (model.fc.fc1.in_features, model.fc.fc1.out_features) == (3136, 128)
    assert (model.classifier.in_features, model.classifier.out_features) == (128, 10)


def test_fmnist_resnet_structure():
    model = build_model("fmnist-resnet")
    assert isinstance(model, FashionResNet)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 1 + 3 * 2 * 2 + 2
    # 1x1 shortcuts exactly where the shape changes (first block of stages 2 and 3).
    assert isinstance(model.layer1[0].shortcut, nn.Identity)
    assert model.layer2[0].shortcut.conv.kernel_size == (1, 1) and model.layer2[0].shortcut.conv.stride == (2, 2)
    assert model.layer3[0].shortcut.conv.out_channels == 64
    assert isinstance(model.layer3[1].shortcut, nn.Identity)
    feats = model.layer3(model.layer2(model.layer1(model.stem(example_input(model, batch_size=2)))))
    assert feats.shape == (2, 64, 7, 7)


@pytest.mark.parametrize("name", SMALL)
def test_small_models_trace_with_fx(name):
    model = build_model(name, seed=0)
    x = example_input(model, batch_size=2)
    traced = torch.fx.symbolic_trace(model)
    torch.testing.assert_close(traced(x), model(x))


def test_fmnist_resnet_prunes_with_torch_pruning():
    tp = pytest.importorskip("torch_pruning")
    model = build_model("fmnist-resnet", seed=0)
    x = example_input(model, batch_size=2)
    pruner = tp.pruner.MetaPruner(
        model,
        x,
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=0.5,
        ignored_layers=[model.classifier],
    )
    pruner.step()
    assert n_params(model) < SMALL_PARAMS["fmnist-resnet"] // 2
    assert model(x).shape == (2, 10)
    assert model.classifier.out_features == 10


@pytest.mark.parametrize("name", SMALL)
def test_classifier_is_the_head_and_can_be_excluded(name):
    model = build_model(name)
    head = model.get_submodule(MODELS[name].head)
    assert isinstance(head, nn.Linear) and head.out_features == 10
    types = ("Linear", "Conv2d") if any(isinstance(m, nn.Conv2d) for m in model.modules()) else ("Linear",)
    selected = [n for n, _ in Targets(types=types, exclude=("classifier",)).resolve(model)]
    assert selected and "classifier" not in selected
    assert all(not n.startswith("classifier") for n in selected)


def test_fmnist_cnn_options_shrink_it():
    model = build_model("fmnist-cnn", channels=(8, 16), hidden=32, num_classes=5)
    assert n_params(model) == (8 * 9 + 8) + (16 * 8 * 9 + 16) + (16 * 49 * 32 + 32) + (32 * 5 + 5)
    assert model(example_input(model, batch_size=2)).shape == (2, 5)


def test_seed_makes_init_reproducible_without_touching_global_rng():
    state = torch.get_rng_state()
    a = build_model("lenet5", seed=3)
    b = build_model("lenet5", seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    c = build_model("lenet5", seed=4)
    for (k, va), vb, _vc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values(), strict=False):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.classifier.weight, c.classifier.weight)


# ---------------------------------------------------------------- specs


@pytest.mark.parametrize("name", SMALL)
def test_spec_round_trip_small(name):
    model = build_model(name, num_classes=4)
    spec = get_model_spec(model)
    assert spec == {"name": name, "kwargs": {"num_classes": 4}}
    assert json.loads(json.dumps(spec)) == spec
    rebuilt = build_from_spec(json.loads(json.dumps(spec)))
    assert shapes(rebuilt) == shapes(model)
    assert get_model_spec(rebuilt) == spec
    rebuilt.load_state_dict(model.state_dict())
    x = example_input(name, batch_size=2)
    torch.testing.assert_close(rebuilt(x), model(x))


def test_spec_holds_json_kwargs_and_survives_deepcopy():
    model = build_model("fmnist-resnet", widths=(8, 16, 24), blocks=1)
    spec = get_model_spec(model)
    assert spec == {"name": "fmnist-resnet", "kwargs": {"num_classes": 10, "widths": [8, 16, 24], "blocks": 1}}
    assert "torchslim_spec" not in "".join(model.state_dict())
    assert get_model_spec(copy.deepcopy(model)) == spec
    spec["kwargs"]["blocks"] = 5  # get_model_spec hands out a copy
    assert get_model_spec(model)["kwargs"]["blocks"] == 1
    assert shapes(build_from_spec(get_model_spec(model))) == shapes(model)


def test_get_and_set_spec_on_foreign_models():
    net = nn.Sequential(nn.Linear(3, 2))
    assert get_model_spec(net) is None
    set_model_spec(net, {"name": "lenet5", "kwargs": {"num_classes": 2}})
    assert get_model_spec(net) == {"name": "lenet5", "kwargs": {"num_classes": 2}}
    with pytest.raises(UnknownNameError, match="lenet5"):
        set_model_spec(net, {"name": "lenet-5", "kwargs": {}})
    with pytest.raises(ModelError, match="weights"):
        set_model_spec(net, {"name": "lenet5", "kwargs": {}, "weights": "x"})
    with pytest.raises(ModelError, match="JSON"):
        set_model_spec(net, {"name": "lenet5", "kwargs": {"num_classes": torch.tensor(3)}})
    with pytest.raises(ModelError, match="name"):
        build_from_spec({"kwargs": {}})


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("wrong", "suggestion"),
    [("lenet-5", "lenet5"), ("fmnist_cnn", "fmnist-cnn"), ("efficientnet-lite", "efficientnet-lite0")],
)
def test_unknown_name_suggests(wrong, suggestion):
    with pytest.raises(UnknownNameError) as info:
        build_model(wrong)
    text = str(info.value)
    assert f"Did you mean {suggestion!r}" in text or f"{suggestion!r} or" in text
    assert isinstance(info.value, ConfigError)
    with pytest.raises(UnknownNameError, match="Did you mean"):
        model_info(wrong)


def test_bad_kwargs_are_named():
    with pytest.raises(ModelError, match="chanels") as info:
        build_model("fmnist-cnn", chanels=[8, 16])
    assert "'channels'" in str(info.value)
    with pytest.raises(ModelError, match="'depth'"):
        build_model("lenet5", depth=3)
    with pytest.raises(ModelError, match="num_classes"):
        build_model("lenet5", num_classes=0)
    with pytest.raises(ModelError, match="num_classes"):
        build_model("fmnist-resnet", num_classes=2.5)
    with pytest.raises(ModelError, match="channels"):
        build_model("fmnist-cnn", channels=[8, 16, 32])
    with pytest.raises(ModelError, match="widths"):
        build_model("fmnist-resnet", widths=[8, 0, 8])
    with pytest.raises(ModelError, match="pretrained"):
        build_model("lenet5", pretrained="yes")


def test_missing_optional_package_gives_pip_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)
    with pytest.raises(ModelError, match="pip install efficientnet-lite-pytorch"):
        build_model("efficientnet-lite0", pretrained=False)
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ModelError, match="pip install transformers"):
        build_model("minilm-l6", pretrained=False)


# ---------------------------------------------------------------- example inputs


def test_example_input_is_seeded():
    a = example_input("fmnist-cnn", batch_size=4)
    assert a.shape == (4, 1, 28, 28)
    assert torch.equal(a, example_input(build_model("fmnist-cnn"), batch_size=4))
    assert not torch.equal(a, example_input("fmnist-cnn", batch_size=4, seed=1))
    assert 0.5 < a.std().item() < 1.5
    assert example_input("efficientnet-lite0", batch_size=2).shape == (2, 3, 224, 224)


def test_example_input_errors():
    with pytest.raises(ModelError, match="no torchslim spec"):
        example_input(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ModelError, match="batch_size"):
        example_input("lenet5", batch_size=0)
    with pytest.raises(UnknownNameError):
        example_input("lenet")
