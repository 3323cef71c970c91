"""Quantized layers implement the public layer contract; the quantize plan replay lives in core."""

from __future__ import annotations

import copy

import pytest
import torch
from quant_toys import ToyTransformer, context_for, image_batches, make_cnn, token_batches
from torch import nn

from torchslim.core.layer import CompressedLayer, OnnxForm, StorageBits, compressed_layers
from torchslim.core.plans import PLAN_REPLAYS, model_plan, replay_plan
from torchslim.quantization import ActivationQuant, Quantize, WeightQuant, quantize_handler
from torchslim.quantization.build import empty_quantized


def quantized_cnn(config):
    batches = image_batches()
    return quantize_handler(make_cnn(), config, targets=None, context=context_for(batches)).model, batches


CONFIGS = [
    Quantize(weights=WeightQuant(bits=8), quantize_single_channel_convs=True),
    Quantize(weights=WeightQuant(bits=4, granularity="per_group", group_size=16, range="minmax"), activations=None),
    Quantize(weights=WeightQuant(bits=2, symmetric=False, range="mse"), quantize_single_channel_convs=True),
    Quantize(weights=WeightQuant(bits=1), activations=None),
]


@pytest.mark.parametrize("config", CONFIGS)
def test_stored_state_round_trip_on_an_empty_rebuilt_layer(config):
    model, batches = quantized_cnn(config)
    layers = dict(compressed_layers(model))
    assert set(layers) == {"features.conv1", "features.conv2", "fc", "classifier"}
    rebuilt = copy.deepcopy(make_cnn(seed=7))
    for name, layer in layers.items():
        assert isinstance(layer, CompressedLayer)
        tensors, meta = layer.stored_state(name + ".")
        assert all(key.startswith(name + ".") for key in tensors)
        float_layer = rebuilt.get_submodule(name) if name != "features.conv1" else rebuilt.features.conv1
        empty = empty_quantized(float_layer, layer.layout())
        assert isinstance(empty, CompressedLayer)
        empty.load_stored_state(name + ".", tensors, meta)
        assert torch.equal(empty.stored_weight(), layer.stored_weight())
        assert torch.equal(empty.effective_weight(), layer.effective_weight())
        assert empty.storage_bits() == layer.storage_bits()
        x = torch.randn(3, *_input_shape(layer))
        with torch.no_grad():
            assert torch.equal(empty(x), layer(x))


def _input_shape(layer):
    if isinstance(layer, nn.Linear):
        return (layer.in_features,)
    return (layer.in_channels, 8, 8)


def test_contract_facts_of_an_int8_layer():
    model, _ = quantized_cnn(Quantize(weights=WeightQuant(bits=8), quantize_single_channel_convs=True))
    fc = model.fc
    assert fc.storage_bits() == StorageBits(weight=8, activation=8)
    assert fc.stored_weight().dtype == torch.int8 and fc.stored_weight().shape == fc.effective_weight().shape
    form = fc.onnx_form(True)
    try:
        assert form == OnnxForm(
            integer_weights=True,
            details={
                "weight_bits": 8,
                "granularity": "per_channel",
                "activation": {"mode": "static", "bits": 8, "symmetric": False, "granularity": "per_tensor"},
            },
        )
        assert "_onnx_bias_q" in fc._buffers  # the export form's int32 bias
    finally:
        fc.onnx_form(False)
    assert "_onnx_bias_q" not in fc._buffers
    layout = fc.layout()
    assert layout["class"] == "Linear" and layout["weight"]["levels"] == "uniform"
    assert not hasattr(fc, "weight_bits") and not hasattr(fc, "torchslim_export_state")


def test_per_group_weights_say_they_stay_float_in_onnx():
    model, _ = quantized_cnn(
        Quantize(weights=WeightQuant(bits=4, granularity="per_group", group_size=16), activations=None)
    )
    form = model.fc.onnx_form(True)
    model.fc.onnx_form(False)
    assert form.integer_weights is False and form.details["activation"] is None
    assert model.fc.storage_bits() == StorageBits(weight=4, activation=None)


def test_split_layer_round_trip_keeps_outputs():
    torch.manual_seed(0)
    model = ToyTransformer().eval()
    config = Quantize(activations=ActivationQuant(mode="dynamic"), outlier_channels=2)
    q = quantize_handler(model, config, targets=None, context=context_for(token_batches())).model
    for name, layer in compressed_layers(q):
        tensors, meta = layer.stored_state(name + ".")
        empty = empty_quantized(model.get_submodule(name), layer.layout())
        empty.load_stored_state(name + ".", tensors, meta)
        assert torch.equal(empty.effective_weight(), layer.effective_weight())


def test_plan_replay_is_registered_in_core_and_rebuilds_the_structure():
    assert "quantize" in PLAN_REPLAYS
    model, batches = quantized_cnn(Quantize(weights=WeightQuant(bits=8)))
    plan = model_plan(model)
    assert [e["kind"] for e in plan] == ["fold_batchnorm", "quantize"]
    rebuilt = replay_plan(make_cnn(seed=3), plan, source="test")
    assert {n for n, _ in compressed_layers(rebuilt)} == {n for n, _ in compressed_layers(model)}
    for name, layer in compressed_layers(model):
        tensors, meta = layer.stored_state(name + ".")
        rebuilt.get_submodule(name).load_stored_state(name + ".", tensors, meta)
    rebuilt.load_state_dict({k: v for k, v in model.state_dict().items()}, strict=False)
    x = batches[0][0]
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), model(x))


def test_quantization_reaches_io_only_for_atomic_writes_and_the_entropy_coder():
    """Artifacts are io's business: quantization imports only io's atomic writers (streaming shards) and
    its entropy coder (the stored state of entropy-coded layers), never the artifact machinery."""
    import pathlib
    import re

    allowed = {"torchslim.io.atomic", "torchslim.io.entropy"}
    root = pathlib.Path(__import__("torchslim.quantization", fromlist=["x"]).__file__).parent
    for path in root.glob("*.py"):
        text = path.read_text()
        imported = set(re.findall(r"^\s*(?:from|import) (torchslim\.io[\w.]*)", text, flags=re.MULTILINE))
        assert imported <= allowed, (path.name, imported - allowed)
        assert "torchslim_plan" not in text, path.name
