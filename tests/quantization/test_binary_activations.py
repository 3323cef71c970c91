"""Optional binary activations of binarized layers (torchslim.quantization.binary_activation)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from quant_toys import context_for, image_batches, make_cnn

import torchslim as ts
from torchslim.core.errors import ConfigError
from torchslim.quantization.binary_activation import SignActivation, approx_sign
from torchslim.quantization.binary_config import Binarize, Ternarize
from torchslim.quantization.binary_technique import binary_weights_handler


def _outcome(config):
    batches = image_batches(n=128, batch=32)
    return binary_weights_handler(
        make_cnn(), config, targets=None, context=context_for(batches, example=batches[0][0], train=batches)
    )


@pytest.fixture(scope="module")
def binary_in_out():
    return _outcome(Binarize(activations="binary", train={"max_steps": 3, "lr": 1e-2}))


def test_approx_sign_is_sign_with_bi_real_gradient():
    v = torch.tensor([-2.0, -0.5, 0.0, 0.25, 1.5], requires_grad=True)
    out = approx_sign(v)
    assert out.detach().tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0]
    out.sum().backward()
    assert torch.allclose(v.grad, torch.tensor([0.0, 1.0, 2.0, 1.5, 0.0]))  # 2 - 2|v| inside, 0 outside


def test_thresholds_start_at_the_channel_mean():
    act = SignActivation(3, dim=1)
    x = torch.randn(8, 3, 4, 4) + torch.tensor([1.0, -2.0, 0.5]).reshape(1, 3, 1, 1)
    act.init_from([x])
    assert torch.allclose(act.threshold, x.mean(dim=(0, 2, 3)), atol=1e-5)
    act.eval()
    out = act(x)
    for c in range(3):  # about half the inputs of every channel on each side
        assert 0.2 < float((out[:, c] > 0).float().mean()) < 0.8


def test_binarized_layers_see_two_values(binary_in_out):
    model = binary_in_out.model
    assert binary_in_out.info["binary_inputs"] == ["fc", "features.conv2"]
    seen = {}
    handles = [
        model.get_submodule(n).register_forward_hook(lambda m, a, o, n=n: seen.__setitem__(n, m.input_binarizer(a[0])))
        for n in ("fc", "features.conv2")
    ]
    with torch.no_grad():
        model(image_batches(n=16, batch=16, seed=3)[0][0])
    for h in handles:
        h.remove()
    for name, x_b in seen.items():
        beta = float(model.get_submodule(name).input_binarizer.scale.detach().abs())
        assert set(x_b.unique().tolist()) == {beta, -beta}, name  # one scale: XNOR-popcount times a * beta
    assert not hasattr(model.features.conv1, "input_binarizer")  # the kept first layer sees the image


def test_binary_inputs_reload_and_export_with_parity(binary_in_out, tmp_path):
    from torchslim.deploy import export_onnx

    model = binary_in_out.model
    x = image_batches(n=16, batch=16, seed=4)[0][0]
    with torch.no_grad():
        ref = model(x)
    reloaded = ts.load(ts.save(model, tmp_path / "a"), model=make_cnn())
    with torch.no_grad():
        assert torch.equal(reloaded(x), ref)
    export_onnx(model, tmp_path / "m.onnx", x[:1])
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    np.testing.assert_allclose(got, ref.numpy(), rtol=1e-4, atol=1e-5)


def test_ternary_weights_with_binary_inputs_and_config_errors():
    outcome = _outcome(Ternarize(activations="binary", trained_scales=True, train={"max_steps": 2}))
    assert type(outcome.model.fc).__name__ == "BinaryInputTTQQuantizedLinear"
    with pytest.raises(ConfigError, match="report_samples"):
        Binarize(activations="binary", report_samples=0)
    with pytest.raises(ConfigError, match="activations"):
        Binarize(activations="ternary")
