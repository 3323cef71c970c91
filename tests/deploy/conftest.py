"""Fixtures of the deploy tests: tiny float models, a model with the contract-only fake compressed
layer of tests/measure/fake_layer.py, and a hand-built ONNX file."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn


def _fake_layer_module() -> types.ModuleType:
    name = "torchslim_tests_fake_layer"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "measure" / "fake_layer.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def tiny_mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


def tiny_fake_compressed() -> nn.Sequential:
    """The tiny MLP with its first Linear replaced by a 4-bit contract-only fake layer."""
    model = tiny_mlp()
    model[1] = _fake_layer_module().FakeCompressedLinear.from_linear(model[1], bits=4)
    return model


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


@pytest.fixture
def toys() -> types.SimpleNamespace:
    return types.SimpleNamespace(tiny_mlp=tiny_mlp, tiny_fake_compressed=tiny_fake_compressed, linear_onnx=linear_onnx)
