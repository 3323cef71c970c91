"""The ExecuTorch backend: registry, availability with a reason, .pte export, parity, timing.

``torchslim.deploy`` does not import the ExecuTorch backend yet (tests/deploy/test_backend.py still
uses "executorch" as its example of an unknown name), so these tests import it inside each test:
importing it at collection would register it before test_backend.py runs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from torchslim.core.errors import ConfigError, ModelError
from torchslim.deploy import RuntimeBackend, backend_names, get_backend, unavailable_reason


def executorch_backend() -> RuntimeBackend:
    """The registered ExecuTorch backend (registered by importing its package)."""
    import torchslim.deploy.executorch  # noqa: F401 - registers the backend

    return get_backend("executorch")


def test_executorch_is_registered() -> None:
    from torchslim.deploy.executorch import ExecuTorchBackend

    backend = executorch_backend()
    assert {"onnxruntime", "openvino", "executorch"} <= set(backend_names())
    assert isinstance(backend, ExecuTorchBackend) and backend.suffix == ".pte"


def test_without_executorch_the_backend_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "executorch" else real(name, *a))
    backend = executorch_backend()
    assert not backend.available()
    assert "'executorch' is not installed" in (unavailable_reason(backend) or "")


def int8_toy_cnn() -> nn.Module:
    """The int8 toy CNN of test_openvino.py (loaded by path: test files are not a package)."""
    spec = importlib.util.spec_from_file_location(
        "torchslim_tests_openvino", Path(__file__).with_name("test_openvino.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.int8_toy_cnn()


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 14 * 14, 10)
    ).eval()


@pytest.mark.slow
def test_float_cnn_exports_to_a_pte_with_parity(tmp_path: Path) -> None:
    pytest.importorskip("executorch")
    backend = executorch_backend()
    x = torch.rand(4, 1, 28, 28)
    facts = backend.export(cnn(), tmp_path / "m.pte", x)
    assert facts.path.is_file() and facts.bytes == facts.path.stat().st_size and facts.delegated_calls >= 1
    assert facts.input_shapes == [[4, 1, 28, 28]] and not facts.quantized
    parity = backend.check_parity(cnn(), facts.path, x)
    assert parity.ok and parity.max_abs_diff < 1e-4
    stats = backend.time(facts.path, x, warmup=1, repeats=3, threads=1)
    assert stats.runtime == "executorch" and stats.batch_size == 4 and stats.threads == 1
    with pytest.raises(ConfigError, match="shapes are static"):
        backend.time(facts.path, x, batch_size=8, warmup=0, repeats=1, threads=1)


@pytest.mark.slow
def test_int8_cnn_runs_as_one_xnnpack_int8_program_with_parity(tmp_path: Path) -> None:
    pytest.importorskip("executorch")
    backend = executorch_backend()
    model, x = int8_toy_cnn(), torch.rand(4, 1, 28, 28)
    facts = backend.export(model, tmp_path / "q.pte", x)
    # every op delegated: no dequantize / quantize left to ExecuTorch's portable kernels
    assert facts.quantized and facts.delegated_calls == 1 and facts.portable_ops == {}
    assert any("output quantizers copied" in note for note in facts.notes)
    parity = backend.check_parity(model, facts.path, x)
    assert parity.ok, parity


class _Residual(nn.Module):
    """conv -> ReLU -> conv + shortcut -> ReLU -> pooling -> classifier: a residual Add in int8."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.relu1, self.relu2, self.relu3 = nn.ReLU(), nn.ReLU(), nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.stem(x))
        y = self.conv2(self.relu2(self.conv1(x)))
        return self.fc(torch.flatten(self.pool(self.relu3(x + y)), 1))


@pytest.mark.slow
@pytest.mark.parametrize(
    "weights",
    [
        {"granularity": "per_channel"},
        {"granularity": "per_tensor"},
        {"bits": 4},  # 4-bit codes on XNNPACK's int8 kernels (it has no 4-bit convolution)
        {"granularity": "per_group", "group_size": 4},  # float weights: XNNPACK's float kernels
    ],
    ids=["per_channel", "per_tensor", "4bit", "per_group"],
)
def test_int8_residual_model_exports_with_parity(tmp_path: Path, weights: dict[str, Any]) -> None:
    """Every op in XNNPACK (no portable kernel left), the output the same as PyTorch's."""
    pytest.importorskip("executorch")
    from torchslim.core import Context, DataSplits
    from torchslim.quantization import Quantize, WeightQuant, quantize_handler

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    batches = [(torch.rand(8, 3, 16, 16, generator=gen), torch.zeros(8, dtype=torch.long)) for _ in range(2)]
    context = Context(data=DataSplits(train=None, calibration=batches, validation=batches, test=batches))
    config = Quantize(weights=WeightQuant(**weights))
    model = quantize_handler(_Residual().eval(), config, targets=None, context=context).model.eval()
    backend = executorch_backend()
    facts = backend.export(model, tmp_path / "r.pte", batches[0][0][:2])
    assert facts.delegated_calls >= 1 and facts.portable_ops == {}, facts.portable_ops
    parity = backend.check_parity(model, facts.path, batches[0][0][:2])
    assert parity.ok, parity


def _dynamic_mlp(granularity: str) -> nn.Module:
    from torchslim.core import Context, DataSplits
    from torchslim.quantization import ActivationQuant, Quantize, quantize_handler

    torch.manual_seed(0)
    batches = [(torch.randn(8, 16), torch.zeros(8, dtype=torch.long))] * 2
    context = Context(data=DataSplits(train=None, calibration=batches, validation=batches, test=batches))
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    config = Quantize(activations=ActivationQuant(mode="dynamic", dynamic_granularity=granularity))
    return quantize_handler(model, config, targets=None, context=context).model.eval()


def test_per_tensor_dynamic_inputs_are_refused_with_the_layers_and_no_file(tmp_path: Path) -> None:
    pytest.importorskip("executorch")
    model, x = _dynamic_mlp("per_tensor"), torch.randn(2, 16)
    with torch.no_grad():
        before = model(x)
    with pytest.raises(ModelError, match=r"per-token ranges on Linear layers.*onnxruntime.*\['0', '2'\]"):
        executorch_backend().export(model, tmp_path / "d.pte", x)
    assert not (tmp_path / "d.pte").exists()
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, rtol=0, atol=0)  # back in its PyTorch form


@pytest.mark.slow
def test_per_token_dynamic_inputs_run_as_xnnpack_dynamic_int8_with_parity(tmp_path: Path) -> None:
    pytest.importorskip("executorch")
    backend = executorch_backend()
    model, x = _dynamic_mlp("per_token"), torch.randn(4, 16)
    facts = backend.export(model, tmp_path / "t.pte", x)
    assert facts.quantized and facts.delegated_calls == 1 and facts.portable_ops == {}, facts
    parity = backend.check_parity(model, facts.path, x)
    assert parity.ok, parity
