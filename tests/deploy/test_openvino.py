"""The OpenVINO backend: registry, availability with a reason, IR export, parity and kernels."""

from __future__ import annotations

import importlib.util
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

from torchslim.core import Context, DataSplits
from torchslim.core.errors import ConfigError
from torchslim.deploy import OpenVinoBackend, backend_names, get_backend, unavailable_reason

pytest.importorskip("openvino")

from torchslim.deploy.openvino import kernel_precisions  # noqa: E402 - after the importorskip


def toy_cnn() -> nn.Module:
    """conv-bn-relu-pool, conv-relu-pool, fc-relu, classifier: fmnist-cnn's shape, smaller."""
    torch.manual_seed(0)
    features = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(1, 8, 3, padding=1),
            bn1=nn.BatchNorm2d(8),
            relu1=nn.ReLU(),
            pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(8, 16, 3, padding=1),
            relu2=nn.ReLU(),
            pool2=nn.MaxPool2d(2),
        )
    )
    return nn.Sequential(
        OrderedDict(
            features=features,
            flatten=nn.Flatten(),
            fc=nn.Linear(16 * 7 * 7, 32),
            relu=nn.ReLU(),
            classifier=nn.Linear(32, 10),
        )
    ).eval()


def int8_toy_cnn() -> nn.Module:
    """The toy CNN after torchslim's default post-training int8 quantization."""
    from torchslim.quantization import Quantize, quantize_handler

    gen = torch.Generator().manual_seed(1)
    batches = [(torch.rand(16, 1, 28, 28, generator=gen), torch.zeros(16, dtype=torch.long)) for _ in range(2)]
    context = Context(data=DataSplits(train=None, calibration=batches, validation=batches, test=batches))
    return quantize_handler(toy_cnn(), Quantize(), targets=None, context=context).model.eval()


def test_openvino_is_registered_next_to_onnxruntime() -> None:
    assert {"onnxruntime", "openvino"} <= set(backend_names())
    backend = get_backend("openvino")
    assert isinstance(backend, OpenVinoBackend) and backend.suffix == ".xml"
    assert backend.available() and unavailable_reason(backend) is None


def test_without_openvino_the_backend_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    backend = get_backend("openvino")
    assert not backend.available()
    reason = unavailable_reason(backend)
    assert reason is not None and "'openvino' is not installed" in reason and "torchslim[deploy]" in reason


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_float_models_export_with_parity(tmp_path: Path, kind: str) -> None:
    torch.manual_seed(0)
    if kind == "mlp":
        model: nn.Module = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 3)).eval()
        x = torch.randn(4, 16)
    else:
        model, x = toy_cnn(), torch.rand(4, 1, 28, 28)
    backend = get_backend("openvino")
    facts = backend.export(model, tmp_path / "m.xml", x)
    assert facts.path.is_file() and (tmp_path / "m.bin").is_file() and not facts.quantized
    assert facts.bytes == (tmp_path / "m.xml").stat().st_size + (tmp_path / "m.bin").stat().st_size
    parity = backend.check_parity(model, facts.path, x)
    assert parity.ok and not parity.quantized and parity.max_abs_diff < 1e-4
    out = backend.run(facts.path, x[:2], threads=1)  # a dynamic batch: another batch size runs too
    assert out.shape == (2, 3 if kind == "mlp" else 10)
    stats = backend.time(facts.path, x, batch_size=8, warmup=1, repeats=3, threads=1)
    assert stats.runtime == "openvino" and stats.batch_size == 8 and stats.threads == 1 and stats.median_ms > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.xml"]  # nothing left behind


def test_torchslim_int8_runs_integer_kernels_with_parity(tmp_path: Path) -> None:
    model = int8_toy_cnn()
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    backend = get_backend("openvino")
    facts = backend.export(model, tmp_path / "q.xml", x)
    assert facts.quantized and "features.conv2" in facts.integer_layers
    parity = backend.check_parity(model, facts.path, x)
    assert parity.ok and parity.quantized and parity.max_diff_in_steps is not None and parity.max_diff_in_steps <= 2
    kernels = kernel_precisions(facts.path, x)
    integer = {k: v for k, v in kernels.items() if k.endswith((" u8", " i8"))}
    # conv2, fc and classifier are int8 layers; conv1 (one input channel) stays float by default
    assert sum(integer.values()) == 3, kernels
    assert kernels.get("Convolution f32") == 1, kernels


def test_dynamic_int8_inputs_get_a_note_and_weights_only_runs_int8_fullyconnected(tmp_path: Path) -> None:
    from torchslim.quantization import ActivationQuant, Quantize, quantize_handler

    def mlp() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 64)).eval()

    gen = torch.Generator().manual_seed(3)
    batches = [(torch.randn(4, 16, 64, generator=gen), torch.zeros(4, dtype=torch.long)) for _ in range(2)]
    context = Context(data=DataSplits(calibration=batches))
    x = torch.randn(2, 16, 64, generator=gen)
    backend = get_backend("openvino")
    dynamic = Quantize(activations=ActivationQuant(mode="dynamic"))
    facts = backend.export(quantize_handler(mlp(), dynamic, targets=None, context=context).model, tmp_path / "d.xml", x)
    assert any("2 dynamic int8 input quantizations" in note and "activations: null" in note for note in facts.notes)
    weights_only = quantize_handler(mlp(), Quantize(activations=None), targets=None, context=context).model
    facts = backend.export(weights_only, tmp_path / "w.xml", x)
    assert not any("dynamic int8" in note for note in facts.notes)
    assert backend.check_parity(weights_only, facts.path, x).ok
    kernels = kernel_precisions(facts.path, x)
    assert kernels.get("FullyConnected i8", 0) + kernels.get("FullyConnected u8", 0) == 2, kernels


def test_export_refuses_a_path_that_is_not_xml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must end in '.xml'"):
        get_backend("openvino").export(toy_cnn(), tmp_path / "m.onnx", torch.rand(1, 1, 28, 28))
