"""The binarize / ternarize techniques: which layers, exact levels per channel, packed artifacts that
reload with identical outputs (also in a fresh process), ONNX parity, and errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from quant_toys import context_for, image_batches, make_cnn
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import torchslim as ts
from torchslim.core import Context, DataSplits, Recipe, Step, Targets
from torchslim.core.errors import ConfigError, DataError, TargetError
from torchslim.quantization import QuantizedMixin
from torchslim.quantization.binary_config import Binarize, Ternarize
from torchslim.quantization.binary_layer import TTQMixin
from torchslim.quantization.binary_technique import binary_weights_handler

QUICK_TRAIN = {"max_steps": 3, "lr": 1e-2}
CONFIGS = {
    "binary": Binarize(train=QUICK_TRAIN),
    "ternary": Ternarize(train=QUICK_TRAIN),
    "ttq": Ternarize(train=QUICK_TRAIN, trained_scales=True),
}
LOW = ("features.conv2", "fc")
EDGE = ("features.conv1", "classifier")


def _context() -> Context:
    batches = image_batches(n=128, batch=32)
    return context_for(batches, example=batches[0][0], train=batches)


@pytest.fixture(scope="module")
def outcomes():
    return {
        kind: binary_weights_handler(make_cnn(), cfg, targets=None, context=_context()) for kind, cfg in CONFIGS.items()
    }


def _channel_values(layer: QuantizedMixin) -> list[set[float]]:
    w = layer.effective_weight().detach()
    return [set(row.tolist()) for row in w.reshape(w.shape[0], -1)]


def test_first_and_last_layers_keep_8_bits_and_the_rest_are_low_bit(outcomes):
    for kind, outcome in outcomes.items():
        model = outcome.model
        for name in EDGE:
            layer = model.get_submodule(name)
            assert isinstance(layer, QuantizedMixin)
            assert (layer.weight_spec.levels, layer.weight_spec.bits) == ("uniform", 8), (kind, name)
        for name in LOW:
            layer = model.get_submodule(name)
            expected = ("binary", 1) if kind == "binary" else ("ternary", 2)
            assert (layer.weight_spec.levels, layer.weight_spec.bits) == expected, (kind, name)
            assert isinstance(layer, TTQMixin) == (kind == "ttq")
        assert outcome.info["kept_edge_layers"] == dict.fromkeys(EDGE, 8)
        assert outcome.info["train"]["steps"] == 3


def test_binary_weights_take_exactly_two_values_per_output_channel(outcomes):
    for name in LOW:
        layer = outcomes["binary"].model.get_submodule(name)
        for c, values in enumerate(_channel_values(layer)):
            a = float(layer.weight_scale[c])
            assert values == {a, -a}, (name, c)


def test_ternary_weights_take_three_values_per_output_channel(outcomes):
    for kind in ("ternary", "ttq"):
        for name in LOW:
            layer = outcomes[kind].model.get_submodule(name)
            negative = layer.weight_scale_negative if kind == "ttq" else layer.weight_scale
            for c, values in enumerate(_channel_values(layer)):
                assert values == {float(layer.weight_scale[c]), 0.0, -float(negative[c])}, (kind, name, c)
    ttq = outcomes["ttq"].model.fc
    assert not torch.equal(ttq.weight_scale, ttq.weight_scale_negative)  # two trained scales, not one


def test_training_moves_the_weights():
    """With lr 0.01 and a few STE steps, the trained codes are not the post-training ones."""
    post = binary_weights_handler(make_cnn(), Binarize(train={"epochs": 0}), targets=None, context=_context())
    trained = binary_weights_handler(make_cnn(), CONFIGS["binary"], targets=None, context=_context())
    assert "train" not in post.info
    assert not torch.equal(post.model.fc.weight_q, trained.model.fc.weight_q)


def test_packed_artifact_is_small_and_reloads_identical_outputs(outcomes, tmp_path):
    x = image_batches(n=8, batch=8, seed=5)[0][0]
    for kind, outcome in outcomes.items():
        directory = ts.save(outcome.model, tmp_path / kind)
        with safe_open(str(directory / "model.safetensors"), "pt") as f:
            packed = {k: f.get_tensor(k) for k in f.keys() if k.endswith("weight_packed")}
        bits = 1 if kind == "binary" else 2
        assert packed["fc.weight_packed"].numel() == 32 * 256 * bits // 8  # 8 or 4 codes per byte
        assert packed["features.conv2.weight_packed"].numel() == 16 * 8 * 9 * bits // 8
        assert packed["classifier.weight_packed"].numel() == 10 * 32  # 8-bit
        reloaded = ts.load(directory, model=make_cnn())
        with torch.no_grad():
            assert torch.equal(reloaded(x), outcome.model(x)), kind
        assert isinstance(reloaded.fc, TTQMixin) == (kind == "ttq")


LOADER = r"""
import sys
import torch
from safetensors.torch import load_file, save_file
sys.path.insert(0, sys.argv[1])
from quant_toys import make_cnn
import torchslim
torch.set_num_threads(1)
x = load_file(sys.argv[2])["x"]
out = {}
for item in sys.argv[4:]:
    kind, directory = item.split("=", 1)
    with torch.no_grad():
        out[kind] = torchslim.load(directory, model=make_cnn())(x).contiguous()
save_file(out, sys.argv[3])
"""


@pytest.mark.slow  # a fresh interpreter imports torch and torchslim (~10-20 s); tests/contract does it for the defaults
def test_every_form_reloads_identically_in_a_fresh_process(outcomes, tmp_path):
    x = image_batches(n=8, batch=8, seed=6)[0][0].contiguous()
    save_file({"x": x}, str(tmp_path / "x.safetensors"))
    saved = [f"{kind}={ts.save(o.model, tmp_path / kind)}" for kind, o in outcomes.items()]
    done = subprocess.run(
        [sys.executable, "-c", LOADER, str(Path(__file__).parent), str(tmp_path / "x.safetensors"),
         str(tmp_path / "y.safetensors"), *saved],
        capture_output=True, text=True, timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": ""},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    got = load_file(str(tmp_path / "y.safetensors"))
    torch.set_num_threads(1)
    for kind, outcome in outcomes.items():
        with torch.no_grad():
            assert torch.equal(got[kind], outcome.model(x)), kind


def test_onnx_export_matches_onnxruntime(outcomes, tmp_path):
    from torchslim.deploy import export_onnx

    x = image_batches(n=16, batch=16, seed=7)[0][0]
    for kind, outcome in outcomes.items():
        path = tmp_path / f"{kind}.onnx"
        export_onnx(outcome.model, path, x[:1])
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        with torch.no_grad():
            ref = outcome.model(x).numpy()
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5, err_msg=kind)


def test_keep_first_and_last_false_binarizes_every_layer():
    config = Binarize(keep_first=False, keep_last=False, train={"epochs": 0})
    outcome = binary_weights_handler(make_cnn(), config, targets=None, context=_context())
    for name in (*EDGE, *LOW):
        assert outcome.model.get_submodule(name).weight_spec.levels == "binary", name


def test_through_compress_and_a_yaml_recipe():
    recipe = Recipe.from_yaml(
        "steps:\n- technique: ternarize\n  config: {train: {max_steps: 2}, trained_scales: true}\n"
    )
    assert recipe == Recipe([Step(Ternarize(train={"max_steps": 2}, trained_scales=True))])
    batches = image_batches(n=64, batch=32)
    data = DataSplits(train=batches, calibration=batches, validation=batches, test=batches)
    result = ts.compress(make_cnn(), data, recipe=recipe, repeats=1, quiet=True, runtime="pytorch")
    assert result.report.after["bytes"] < result.report.before["bytes"]
    assert isinstance(result.model.fc, TTQMixin)


def test_errors_name_the_problem():
    with pytest.raises(ConfigError, match="edge_bits"):
        Binarize(edge_bits=1)
    with pytest.raises(ConfigError, match="threshold"):
        Ternarize(threshold=-1.0)
    with pytest.raises(ConfigError, match="clip"):
        Binarize(clip=0.0)
    with pytest.raises(TargetError, match="no layer left"):
        binary_weights_handler(make_cnn(), Binarize(), targets=Targets(names=("classifier",)), context=_context())
    with pytest.raises(DataError, match="binarize"):
        binary_weights_handler(make_cnn(), Binarize(), targets=None, context=Context())
    model = make_cnn()
    with torch.no_grad():
        model.fc.weight[0, 0] = float("nan")
    with pytest.raises(Exception, match="fc"):
        binary_weights_handler(model, Binarize(train={"epochs": 0}), targets=None, context=_context())


class _Mask(torch.nn.Module):
    def __init__(self, keep: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("keep", keep)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.keep


def test_ternary_keeps_a_pruning_mask_and_binary_says_it_cannot():
    model = make_cnn()
    keep = (torch.rand(model.fc.weight.shape, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    torch.nn.utils.parametrize.register_parametrization(model.fc, "weight", _Mask(keep))
    ternary = binary_weights_handler(model, CONFIGS["ternary"], targets=None, context=_context())
    assert int(ternary.model.fc.weight_q[keep == 0].abs().sum()) == 0  # pruned weights stay zero
    binary = binary_weights_handler(model, Binarize(train={"epochs": 0}), targets=None, context=_context())
    assert any("pruning masks of ['fc']" in note for note in binary.info["notes"])
