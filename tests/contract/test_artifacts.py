"""Registry-driven artifact contract: every registered technique, the moment it is registered.

On two toy models (an MLP and a CNN with batch norm) each technique's compressed model

* saves with ``result.save(dir)`` and loads with ``torchslim.load`` in a FRESH interpreter giving
  identical outputs (compared exactly, on the same inputs and thread count);
* reports bytes that are the real size of the model files (weights + manifest) that
  ``result.save`` writes; the ``report.json`` it saves says the same;
* exports to ONNX with ``result.export_onnx(path)`` and onnxruntime gives the PyTorch output
  within the documented tolerance (rtol 1e-3 for a float model, 2 steps of an 8-bit quantizer of
  the output range for a quantized one), or refuses with a typed ``TorchSlimError`` declared below.

Only public APIs: ``torchslim.compress``, ``CompressionResult``, ``torchslim.save`` / ``load``.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from contract_toys import TOYS, quick_config, registered_techniques, toy_data
from safetensors.torch import load_file, save_file

import torchslim as ts
from torchslim.core import Recipe, Step, TorchSlimError

ARTIFACT_TOYS = ("mlp", "cnn")
WEIGHTS_FILE = "model.safetensors"
MODEL_FILES = (WEIGHTS_FILE, "torchslim.json")
"""What ``torchslim.save`` writes for a model (``result.save`` adds the recipe, report.json and report.html)."""

FLOAT_RTOL, FLOAT_ATOL = 1e-3, 1e-5
QUANTIZED_STEPS = 2.0

EXPECTED_EXPORT_REFUSALS: dict[tuple[str, str], str] = {}
"""(technique, toy) -> text of the TorchSlimError its ONNX export must raise (none today)."""

LOADER = r"""
import sys
import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, sys.argv[1])
from contract_toys import TOYS

import torchslim

torch.set_num_threads(int(sys.argv[2]))
inputs = load_file(sys.argv[3])["x"]
outputs = {}
for item in sys.argv[5:]:
    toy, directory = item.split("=", 1)
    model = torchslim.load(directory, model=TOYS[toy]())
    assert not model.training, "load returns the model in eval mode"
    with torch.no_grad():
        outputs[toy] = model(inputs).contiguous()
save_file(outputs, sys.argv[4])
"""


@pytest.fixture(scope="module")
def compressed():
    """(technique, toy) -> CompressionResult (or the TorchSlimError compress raised), computed once."""
    cache = {}

    def get(technique, toy):
        if (technique, toy) not in cache:
            torch.manual_seed(0)
            model = TOYS[toy]().eval()
            recipe = Recipe([Step(quick_config(technique))])
            try:
                cache[technique, toy] = ts.compress(
                    model, toy_data(), recipe=recipe, repeats=1, quiet=True, runtime="pytorch"
                )
            except TorchSlimError as exc:  # test_every_technique.py checks that the refusal is declared
                cache[technique, toy] = exc
        return cache[technique, toy]

    return get


def inputs() -> torch.Tensor:
    return next(iter(toy_data().test))[0][:4].contiguous()


def outputs_of(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x)


def results_for(compressed, technique):
    found = {toy: compressed(technique, toy) for toy in ARTIFACT_TOYS}
    return {toy: r for toy, r in found.items() if not isinstance(r, TorchSlimError)}


@pytest.mark.parametrize("technique", registered_techniques())
def test_save_then_load_in_a_fresh_process_gives_identical_outputs(technique, compressed, tmp_path):
    results = results_for(compressed, technique)
    if not results:
        pytest.skip(f"{technique} refused every toy (checked in test_every_technique.py)")
    x = inputs()
    save_file({"x": x}, str(tmp_path / "inputs.safetensors"))
    expected, saved = {}, []
    for toy, result in results.items():
        expected[toy] = outputs_of(result.model, x)
        directory = result.save(tmp_path / toy)
        saved.append(f"{toy}={directory}")
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    done = subprocess.run(
        [sys.executable, "-c", LOADER, str(Path(__file__).parent), str(torch.get_num_threads()),
         str(tmp_path / "inputs.safetensors"), str(tmp_path / "outputs.safetensors"), *saved],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    got = load_file(str(tmp_path / "outputs.safetensors"))
    for toy, want in expected.items():
        assert got[toy].shape == want.shape
        assert torch.equal(got[toy], want), f"{technique} on {toy}: max diff {(got[toy] - want).abs().max():.3g}"


def model_files_bytes(directory: Path) -> int:
    return sum((directory / name).stat().st_size for name in MODEL_FILES)


@pytest.mark.parametrize("technique", registered_techniques())
def test_report_bytes_are_the_real_artifact_size(technique, compressed, tmp_path):
    results = results_for(compressed, technique)
    if not results:
        pytest.skip(f"{technique} refused every toy (checked in test_every_technique.py)")
    for toy, result in results.items():
        full = Path(result.save(tmp_path / toy))
        assert result.report.after["bytes"] == model_files_bytes(full), f"{technique} on {toy}"
        plain = Path(ts.save(result.model, tmp_path / f"{toy}-plain"))
        assert (full / WEIGHTS_FILE).read_bytes() == (plain / WEIGHTS_FILE).read_bytes(), f"{technique} on {toy}"
        saved_report = json.loads((full / "report.json").read_text(encoding="utf-8"))
        assert saved_report["after"]["bytes"] == result.report.after["bytes"]
        assert saved_report["before"]["bytes"] == result.report.before["bytes"]


def within_tolerance(got: np.ndarray, ref: np.ndarray, *, quantized: bool) -> tuple[bool, str]:
    diff = np.abs(got - ref)
    if quantized:
        step = float(ref.max() - ref.min()) / 255.0
        return bool(diff.max() <= QUANTIZED_STEPS * step + 1e-12), f"{diff.max() / step:.2f} steps"
    bound = FLOAT_ATOL + FLOAT_RTOL * np.abs(ref)
    return bool((diff <= bound).all()), f"max |diff| {diff.max():.3g}"


@pytest.mark.parametrize("toy", ARTIFACT_TOYS)
@pytest.mark.parametrize("technique", registered_techniques())
def test_onnx_export_matches_onnxruntime_or_refuses_with_a_reason(technique, toy, compressed, tmp_path):
    result = compressed(technique, toy)
    if isinstance(result, TorchSlimError):
        pytest.skip(f"{technique} refused {toy} (checked in test_every_technique.py)")
    path = tmp_path / "model.onnx"
    try:
        facts = result.export_onnx(path)
    except TorchSlimError as exc:
        assert (technique, toy) in EXPECTED_EXPORT_REFUSALS, f"{technique} on {toy}: undeclared refusal {exc}"
        assert EXPECTED_EXPORT_REFUSALS[technique, toy] in str(exc)
        assert not path.exists(), "a refused export leaves no file"
        return
    assert (technique, toy) not in EXPECTED_EXPORT_REFUSALS, "a declared refusal did not happen"
    assert facts.bytes == path.stat().st_size, "export facts give the real file size"
    x = inputs()
    ref = outputs_of(result.model, x).float().numpy()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert got.shape == ref.shape
    ok, what = within_tolerance(got.astype(np.float32), ref, quantized=facts.quantized)
    assert ok, f"{technique} on {toy}: onnxruntime vs PyTorch {what} (quantized={facts.quantized})"
    if technique == "quantize":
        assert facts.quantized, "a quantized model exports as QDQ"
