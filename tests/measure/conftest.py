"""Shared toys for the measurement tests: LeNet-300-100-shaped MLP, a small CNN, dict/text models,
a hand-built ONNX file and a before/after snapshot of everything measurement must not change.

Tests get them through the ``toys`` fixture (the suite runs with ``--import-mode=importlib``)."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn


def lenet_300_100(hidden: tuple[int, int] = (300, 100)) -> nn.Sequential:
    """The LeNet-300-100 shape: 784 -> 300 -> 100 -> 10 (module names "1", "3", "5")."""
    h1, h2 = hidden
    return nn.Sequential(nn.Flatten(), nn.Linear(784, h1), nn.ReLU(), nn.Linear(h1, h2), nn.ReLU(), nn.Linear(h2, 10))


class SmallCNN(nn.Module):
    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1, stride=2)
        self.drop = nn.Dropout(0.5)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(2 * width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.conv2(x))
        return self.classifier(self.drop(self.pool(x).flatten(1)))


@dataclasses.dataclass
class Output:
    logits: torch.Tensor


class DictModel(nn.Module):
    """Takes keyword tensors and returns an object with `.logits`."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(2, 3)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> Output:
        return Output(self.a(x) + self.b(y))


class TextModel(nn.Module):
    """A toy text classifier: tokenize() maps each text to [len, count of 'a'] features."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        feats = torch.tensor([[float(len(t)), float(t.count("a"))] for t in texts])
        return {"features": feats}

    def forward(self, features: torch.Tensor) -> Output:
        return Output(self.fc(features))


def snapshot(model: nn.Module) -> dict[str, Any]:
    """Everything measurement must leave unchanged."""
    from torch.nn.modules import module as module_mod

    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "training": [(n, m.training) for n, m in model.named_modules()],
        "requires_grad": [(n, p.requires_grad) for n, p in model.named_parameters()],
        "hooks": [
            (n, len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
            for n, m in model.named_modules()
        ],
        "global_hooks": (
            len(module_mod._global_forward_hooks),
            len(module_mod._global_forward_pre_hooks),
        ),
        "threads": torch.get_num_threads(),
        "grad_enabled": torch.is_grad_enabled(),
    }


def assert_unchanged(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert before["state"].keys() == after["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), f"{key} changed"
    for field in ("training", "requires_grad", "hooks", "global_hooks", "threads", "grad_enabled"):
        assert before[field] == after[field], f"{field} changed"


def linear_onnx(path: Path, weight: np.ndarray, bias: np.ndarray) -> Path:
    """A one-layer ONNX model y = x @ W^T + b, built by hand (no exporter needed)."""
    out_f, in_f = weight.shape
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "b"], ["y"], transB=1)],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", in_f])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", out_f])],
        initializer=[numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


class Mask(nn.Module):
    """A parametrization that multiplies the weight by a fixed 0/1 mask (as pruning code will)."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask


def _load_fake_layer() -> types.ModuleType:
    """tests/measure/fake_layer.py (the suite imports test files by path, not as packages)."""
    name = "torchslim_tests_fake_layer"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent / "fake_layer.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def toys() -> types.SimpleNamespace:
    return types.SimpleNamespace(
        lenet_300_100=lenet_300_100,
        SmallCNN=SmallCNN,
        DictModel=DictModel,
        TextModel=TextModel,
        Output=Output,
        snapshot=snapshot,
        assert_unchanged=assert_unchanged,
        linear_onnx=linear_onnx,
        Mask=Mask,
        FakeCompressedLinear=_load_fake_layer().FakeCompressedLinear,
        compress_linears=_load_fake_layer().compress_linears,
    )
