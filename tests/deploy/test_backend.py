"""The runtime-backend registry and the onnxruntime backend through the RuntimeBackend protocol."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from torchslim.core.errors import UnknownNameError
from torchslim.deploy import (
    BACKENDS,
    OnnxExport,
    ParityReport,
    RuntimeBackend,
    available_backends,
    backend_names,
    deploy_for_timing,
    get_backend,
    register_backend,
)


def test_registry_knows_onnxruntime_and_refuses_unknown_names() -> None:
    backend = get_backend("onnxruntime")
    assert isinstance(backend, RuntimeBackend)
    assert backend.name == "onnxruntime" and backend.suffix == ".onnx"
    assert "onnxruntime" in backend_names() and "onnxruntime" in available_backends()
    with pytest.raises(UnknownNameError, match="Did you mean 'onnxruntime'"):
        get_backend("onnxruntim")
    with pytest.raises(UnknownNameError, match="runtime backend"):
        get_backend("tensorrt")


def test_a_new_backend_is_one_registration() -> None:
    class Stub:
        name = "stub-runtime-for-test"
        suffix = ".stub"

        def available(self) -> bool:
            return False

        def export(self, model, path, example_input):  # noqa: ANN001, ANN201 - protocol shape only
            raise NotImplementedError

        def run(self, path, inputs, *, threads=None):  # noqa: ANN001, ANN201
            raise NotImplementedError

        def check_parity(self, model, path, inputs):  # noqa: ANN001, ANN201
            raise NotImplementedError

        def time(self, path, example_input, *, batch_size=None, warmup=3, repeats=20, threads=None):  # noqa: ANN001, ANN201
            raise NotImplementedError

    stub = register_backend(Stub())
    assert isinstance(stub, RuntimeBackend)
    assert get_backend("stub-runtime-for-test") is stub
    assert register_backend(Stub()) is not stub and get_backend("stub-runtime-for-test") is stub  # idempotent
    assert "stub-runtime-for-test" not in available_backends()
    assert "stub-runtime-for-test" in [entry.name for entry in BACKENDS]


def test_float_model_export_and_parity(tmp_path: Path, toys: SimpleNamespace) -> None:
    backend = get_backend("onnxruntime")
    model = toys.tiny_mlp()
    model.train()
    x = torch.randn(5, 1, 4, 4)
    facts = backend.export(model, tmp_path / "float.onnx", x)
    assert isinstance(facts, OnnxExport)
    assert facts.quantized is False and facts.integer_layers == [] and facts.path.is_file()
    assert facts.bytes == facts.path.stat().st_size
    assert model.training  # modes restored
    out = backend.run(facts.path, torch.randn(2, 1, 4, 4))
    assert out.shape == (2, 3)  # dynamic batch
    parity = backend.check_parity(model, facts.path, x)
    assert isinstance(parity, ParityReport)
    assert parity.ok and parity.quantized is False and parity.max_abs_diff < 1e-4


def test_contract_only_compressed_layer_exports_in_its_onnx_form(tmp_path: Path, toys: SimpleNamespace) -> None:
    backend = get_backend("onnxruntime")
    model = toys.tiny_fake_compressed()
    fake = model[1]
    x = torch.randn(4, 1, 4, 4)
    facts = backend.export(model, tmp_path / "fake.onnx", x)
    assert fake.onnx_calls == [True, False]  # switched to its ONNX form for tracing, then back
    assert facts.quantized is True
    assert facts.integer_layers == [] and facts.float_weight_layers == ["1"]  # its OnnxForm said float weights
    assert any("check_parity is the judge" in note for note in facts.notes)
    parity = backend.check_parity(model, facts.path, x)
    assert parity.quantized is True and parity.ok
    assert parity.step is not None and parity.max_diff_in_steps is not None and parity.max_diff_in_steps < 0.01
    expected = model(x).detach().numpy()
    np.testing.assert_allclose(backend.run(facts.path, x), expected, rtol=1e-4, atol=1e-5)


def test_deploy_for_timing_exports_once_and_times(tmp_path: Path, toys: SimpleNamespace) -> None:
    model = toys.tiny_mlp()
    x = torch.randn(1, 1, 4, 4)
    deployment, reason = deploy_for_timing(model, x, tmp_path)
    assert reason is None and deployment is not None
    assert deployment.path.parent == tmp_path and deployment.path.suffix == ".onnx"
    assert deployment.facts is not None and deployment.facts.path == deployment.path
    stats = deployment.timer(batch_size=3, warmup=1, repeats=3, threads=1)
    assert stats.runtime == "onnxruntime" and stats.batch_size == 3 and stats.repeats == 3 and stats.threads == 1
    assert [p.name for p in tmp_path.iterdir()] == [deployment.path.name]


def test_deploy_for_timing_reports_why_an_export_fails(tmp_path: Path) -> None:
    class NoExport(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(x.numpy() * 2)  # leaves the graph: not traceable to ONNX

    deployment, reason = deploy_for_timing(NoExport(), torch.ones(2, 3), tmp_path)
    assert deployment is None and reason and reason.split(":")[0].endswith("Error")


def test_compression_result_export_onnx_still_works(tmp_path: Path, toys: SimpleNamespace) -> None:
    from torchslim.api import CompressionResult
    from torchslim.core.recipe import Recipe
    from torchslim.report import Report

    model = toys.tiny_mlp()
    x = torch.randn(2, 1, 4, 4)
    result = CompressionResult(model=model, report=Report(model="tiny", before={}), recipe=Recipe([]), example_input=x)
    facts = result.export_onnx(tmp_path / "r.onnx")
    assert isinstance(facts, OnnxExport) and facts.path.is_file() and not facts.quantized
    np.testing.assert_allclose(
        get_backend("onnxruntime").run(facts.path, x), model(x).detach().numpy(), rtol=1e-4, atol=1e-5
    )
