"""Quantized models in artifacts: packed codes (honest bytes), plan replay, identical outputs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from quant_toys import context_for, image_batches, make_cnn
from torch import nn

from torchslim.core.errors import ArtifactError
from torchslim.io import load, save
from torchslim.quantization import Quantize, QuantizedMixin, WeightQuant, quantize_handler


def quantized(config, model=None):
    model = model if model is not None else make_cnn()
    batches = image_batches()
    return quantize_handler(model, config, targets=None, context=context_for(batches)).model, batches


@pytest.mark.parametrize(
    "config",
    [
        Quantize(weights=WeightQuant(bits=8), quantize_single_channel_convs=True),
        Quantize(weights=WeightQuant(bits=4, granularity="per_group", group_size=16, range="minmax"), activations=None),
        Quantize(weights=WeightQuant(bits=2, symmetric=False, range="mse"), quantize_single_channel_convs=True),
        Quantize(weights=WeightQuant(bits=1), activations=None),
    ],
)
def test_round_trip_gives_identical_outputs(tmp_path, config):
    model, batches = quantized(config)
    save(model, tmp_path / "a")
    again = load(tmp_path / "a", model=make_cnn(seed=5))
    assert isinstance(again.fc, QuantizedMixin) and isinstance(again.features.bn1, nn.Identity)
    x = batches[0][0]
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    for name in ("features.conv1", "fc", "classifier"):
        assert torch.equal(model.get_submodule(name).weight_q, again.get_submodule(name).weight_q)


def weights_bytes(model, directory):
    save(model, directory)
    return (directory / "model.safetensors").stat().st_size


def test_packed_bytes_follow_the_bit_width(tmp_path):
    torch.manual_seed(0)
    big = nn.Sequential(nn.Linear(512, 512, bias=False), nn.ReLU(), nn.Linear(512, 512, bias=False))
    ctx = context_for([(torch.randn(64, 512), torch.zeros(64))])
    sizes = {}
    for bits in (8, 4, 2):
        q = quantize_handler(
            big, Quantize(weights=WeightQuant(bits=bits, range="minmax"), activations=None), targets=None, context=ctx
        ).model
        sizes[bits] = weights_bytes(q, tmp_path / f"b{bits}")
    sizes[32] = weights_bytes(big, tmp_path / "f32")
    weights = 2 * 512 * 512
    assert sizes[32] == pytest.approx(4 * weights, rel=0.01)
    assert sizes[8] == pytest.approx(weights, rel=0.03)
    assert sizes[4] / sizes[8] == pytest.approx(0.5, abs=0.02)  # a 4-bit weight takes half a byte
    assert sizes[2] / sizes[8] == pytest.approx(0.25, abs=0.02)
    manifest = json.loads((tmp_path / "b4" / "torchslim.json").read_text())
    assert manifest["tensors"]["0"]["bits"] == 4 and manifest["tensors"]["0"]["packed"] == "torchslim-quantized-layer"


def test_built_in_model_reloads_in_a_fresh_process(tmp_path):
    from torchslim.models import build_model

    model = build_model("lenet5", seed=0)
    batches = [(torch.rand(32, 1, 28, 28), torch.zeros(32, dtype=torch.long))]
    q = quantize_handler(model, Quantize(weights=WeightQuant(bits=8)), targets=None, context=context_for(batches)).model
    save(q, tmp_path / "a")
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        expected = q(x)
    code = (
        "import sys, torch, torchslim.quantization\n"
        "from torchslim.io import load\n"
        f"m = load({str(tmp_path / 'a')!r})\n"
        f"x = torch.load({str(tmp_path / 'x.pt')!r}, weights_only=True)\n"
        f"torch.save(m(x).detach(), {str(tmp_path / 'y.pt')!r})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    got = torch.load(tmp_path / "y.pt", weights_only=True)
    assert torch.equal(got, expected)


def test_corrupt_packed_weights_are_reported(tmp_path):
    from safetensors.torch import load_file, save_file

    model, _ = quantized(Quantize(weights=WeightQuant(bits=4, range="minmax"), activations=None))
    save(model, tmp_path / "a")
    tensors = load_file(str(tmp_path / "a" / "model.safetensors"))
    tensors["fc.weight_packed"] = tensors["fc.weight_packed"][:-3].clone()
    save_file(tensors, str(tmp_path / "a" / "model.safetensors"))
    with pytest.raises(ArtifactError, match="layer 'fc'.*bytes cannot hold"):
        load(tmp_path / "a", model=make_cnn())
