"""Power-of-two and APoT levels, and the ``pow2_quant`` technique."""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch import nn

import torchslim as ts
from torchslim.core import Context
from torchslim.core.technique import TECHNIQUES
from torchslim.quantization import APoTLevels, Granularity, PowerOfTwoLevels, PowerOfTwoQuant, WeightQuantizer
from torchslim.quantization.functional import qrange
from torchslim.quantization.pow2 import apot_magnitudes

finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, width=32)


def _is_power_of_two(value: float) -> bool:
    mantissa, _ = math.frexp(abs(value))
    return mantissa == 0.5


@settings(max_examples=30, deadline=None)
@given(
    weights=arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 24)), elements=finite),
    bits=st.integers(2, 6),
    per_channel=st.booleans(),
)
def test_pow2_weights_are_exactly_zero_or_a_signed_power_of_two_times_the_scale(weights, bits, per_channel):
    w = torch.from_numpy(weights)
    granularity = Granularity.per_channel(0) if per_channel else Granularity.per_tensor()
    quantizer = WeightQuantizer(PowerOfTwoLevels(bits=bits), granularity)
    codes, scale, zp = quantizer.quantize(w)
    w_hat = quantizer.dequantize(codes, scale, zp)
    qmin, qmax = qrange(bits)
    assert int(codes.min()) >= qmin and int(codes.max()) <= qmax
    assert all(_is_power_of_two(float(s)) for s in scale.reshape(-1)), "the scale is a power of two"
    ratio = (w_hat / granularity.expand(scale, w.shape)).reshape(-1).tolist()
    for r, value in zip(ratio, w_hat.reshape(-1).tolist(), strict=True):
        assert r == 0.0 or _is_power_of_two(r), f"{r} is not 0 or +-2^k"
        assert value == 0.0 or _is_power_of_two(value), "with a power-of-two scale the weight is one too"
    assert torch.all(torch.sign(w_hat) * torch.sign(w) >= 0), "no sign flips"


@settings(max_examples=30, deadline=None)
@given(weights=arrays(np.float32, st.integers(1, 64), elements=finite), bits=st.integers(2, 6))
def test_pow2_rounds_to_the_nearest_level(weights, bits):
    w = torch.from_numpy(weights)
    levels = PowerOfTwoLevels(bits=bits)
    granularity = Granularity.per_tensor()
    scale, zp = levels.fit(w, granularity=granularity)
    codes = levels.quantize(w, scale, zp, granularity=granularity)
    w_hat = levels.dequantize(codes, scale, zp, granularity=granularity)
    table = torch.cat([-levels.table.flip(0), levels.table]).float() * scale
    best = (w[:, None] - table[None, :]).abs().amin(dim=1)
    assert torch.all((w - w_hat).abs() <= best + 1e-6 * (1 + w.abs()))


@pytest.mark.parametrize("bits", [2, 3, 4, 5])
def test_apot_levels_are_sums_of_at_most_two_powers_of_two(bits):
    table = apot_magnitudes(bits)
    assert table.numel() == 2 ** (bits - 1) and table[0] == 0 and table[-1] == 1
    raw_max = 1.5 if bits >= 3 else 1.0  # 2**0 + 2**-1 (one term only at 2 bits)
    for value in (table[1:] * raw_max).tolist():
        fixed = round(value * 2**40)
        assert fixed == value * 2**40 and 1 <= bin(fixed).count("1") <= 2, value


def test_apot_has_more_levels_near_the_maximum_than_pow2():
    assert apot_magnitudes(4)[-2] > PowerOfTwoLevels(bits=4).table[-2]
    w = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    for levels in (PowerOfTwoLevels(bits=4), APoTLevels(bits=4)):
        q = WeightQuantizer(levels, Granularity.per_channel(0))
        assert ts.quantization.sqnr_db(w, q.dequantize(*q.quantize(w))) > 10


def test_pow2_quant_reloads_and_exports_with_parity(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()
    config = PowerOfTwoQuant(bits=5, apot=False)
    out = TECHNIQUES.handler_for(config)(model, config, targets=None, context=Context(seed=0, quiet=True))
    assert [row["weight_bits"] for row in out.layers] == [5, 5]
    x = torch.randn(3, 1, 8, 8)
    directory = ts.save(out.model, tmp_path / "art")
    rebuilt = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    loaded = ts.load(directory, model=rebuilt)
    with torch.no_grad():
        assert torch.equal(loaded(x), out.model(x))
    facts = ts.deploy.export_onnx(out.model, tmp_path / "m.onnx", x[:1])
    assert facts.float_weight_layers == ["0", "3"]
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        assert np.allclose(got, out.model(x).numpy(), rtol=1e-3, atol=1e-5)


def test_pow2_refuses_one_bit():
    with pytest.raises(ts.core.ConfigError, match="bits"):
        PowerOfTwoQuant(bits=1)
