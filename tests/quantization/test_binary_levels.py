"""Binary and ternary level types and their pure math (torchslim.quantization.binary)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchslim.core.errors import ConfigError
from torchslim.quantization import LEVELS, Granularity, WeightQuantizer, WeightSpec, pack_codes, packed_nbytes
from torchslim.quantization.binary import (
    BinaryLevels,
    TernaryLevels,
    binary_fake_quantize,
    ternary_fake_quantize,
    ttq_dequantize,
    ttq_fake_quantize,
    twn_quantize,
)

PER_CHANNEL = Granularity.per_channel(0)


def _weight(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 0.05


def test_levels_are_registered_and_built_from_a_spec():
    assert LEVELS.entry("binary").handler is BinaryLevels
    assert LEVELS.entry("ternary").handler is TernaryLevels
    assert isinstance(WeightSpec(1, True, PER_CHANNEL, "binary").make_levels(), BinaryLevels)
    assert isinstance(WeightSpec(2, True, PER_CHANNEL, "ternary").make_levels(), TernaryLevels)
    with pytest.raises(ConfigError, match="binary levels store 1-bit codes"):
        WeightSpec(4, True, PER_CHANNEL, "binary").make_levels()
    with pytest.raises(ConfigError, match="ternary levels store 2-bit codes"):
        TernaryLevels(bits=1)
    with pytest.raises(ConfigError, match="ternary threshold"):
        TernaryLevels(threshold=-0.1)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    out=st.integers(1, 6),
    rest=st.sampled_from([(7,), (3, 3, 3), (2, 5)]),
)
def test_binary_weights_take_exactly_two_values_per_output_channel(seed, out, rest):
    w = _weight(seed, (out, *rest))
    codes, scale, zero_point = WeightQuantizer(BinaryLevels(), PER_CHANNEL).quantize(w)
    assert set(codes.unique().tolist()) <= {-1, 1}
    assert torch.equal(codes, torch.where(w >= 0, 1, -1).to(torch.int8))
    assert torch.allclose(scale, w.abs().reshape(out, -1).mean(1))  # XNOR-Net's a = mean |W|
    assert int(zero_point.abs().sum()) == 0
    w_hat = BinaryLevels().dequantize(codes, scale, zero_point, granularity=PER_CHANNEL)
    for c in range(out):
        row, a = w_hat[c].reshape(-1), float(scale[c])
        assert set(row.tolist()) <= {a, -a}
        both_signs = bool((w[c] >= 0).any() and (w[c] < 0).any())
        assert row.unique().numel() == (2 if both_signs else 1)


def _twn_reference(row: torch.Tensor) -> tuple[torch.Tensor, float]:
    delta = 0.7 * float(row.abs().mean())
    codes = torch.zeros_like(row)
    codes[row > delta], codes[row < -delta] = 1, -1
    return codes, float(row.abs()[codes != 0].mean())


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), out=st.integers(1, 5), inner=st.integers(4, 40))
def test_ternary_weights_follow_twn_and_take_three_values_per_channel(seed, out, inner):
    w = _weight(seed, (out, inner))
    codes, scale, _ = WeightQuantizer(TernaryLevels(), PER_CHANNEL).quantize(w)
    w_hat = TernaryLevels().dequantize(codes, scale, torch.zeros_like(scale), granularity=PER_CHANNEL)
    for c in range(out):
        ref_codes, ref_scale = _twn_reference(w[c])
        assert torch.equal(codes[c].float(), ref_codes)
        assert float(scale[c]) == pytest.approx(ref_scale, rel=1e-5)
        values = set(w_hat[c].tolist())
        assert values <= {-float(scale[c]), 0.0, float(scale[c])}
        assert len(values) == len(set(ref_codes.tolist()))  # exactly the levels the codes use


def test_codes_pack_eight_and_four_per_byte():
    w = _weight(0, (16, 32))
    binary_codes, _, _ = WeightQuantizer(BinaryLevels(), PER_CHANNEL).quantize(w)
    ternary_codes, _, _ = WeightQuantizer(TernaryLevels(), PER_CHANNEL).quantize(w)
    assert pack_codes(binary_codes, 1).numel() == packed_nbytes(512, 1) == 64
    assert pack_codes(ternary_codes, 2).numel() == packed_nbytes(512, 2) == 128


def test_binary_straight_through_gradient_is_clipped():
    w = torch.tensor([[0.2, -0.5, 1.5, -3.0]], requires_grad=True)
    binary_fake_quantize(w, PER_CHANNEL, clip=1.0).sum().backward()
    a = w.detach().abs().mean()
    # sign part: a * 1{|w| <= 1}; scale part: d(mean|w|)/dw * sum(sign(w)) = sign(w) / 4 * 0
    expected = torch.tensor([[a, a, 0.0, 0.0]])
    assert torch.allclose(w.grad, expected)
    assert torch.allclose(binary_fake_quantize(w, PER_CHANNEL).detach(), a * torch.tensor([[1.0, -1, 1, -1]]))
    w.grad = None
    binary_fake_quantize(w, PER_CHANNEL, clip=None).sum().backward()  # no clipping: plain straight-through
    assert torch.allclose(w.grad, torch.full_like(w, float(a)))


def test_twn_training_weight_equals_the_stored_weight():
    w = _weight(3, (4, 9))
    codes, scale = twn_quantize(w, PER_CHANNEL)
    stored = TernaryLevels().dequantize(codes, scale, torch.zeros_like(scale), granularity=PER_CHANNEL)
    assert torch.allclose(ternary_fake_quantize(w, PER_CHANNEL), stored)


def test_ttq_gradients_follow_zhu_et_al():
    w = torch.tensor([[0.9, -0.8, 0.01, 0.7, -0.02]], requires_grad=True)
    a_p = torch.tensor([2.0], requires_grad=True)
    a_n = torch.tensor([3.0], requires_grad=True)
    out = ttq_fake_quantize(w, a_p, a_n, PER_CHANNEL)
    assert out.detach().tolist() == [[2.0, -3.0, 0.0, 2.0, 0.0]]
    grad = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]])
    out.backward(grad)
    assert float(a_p.grad) == pytest.approx(1.0 + 4.0)  # sum over I_p
    assert float(a_n.grad) == pytest.approx(-2.0)  # -sum over I_n
    assert w.grad.tolist() == [[2.0, 6.0, 3.0, 8.0, 5.0]]  # a_p g, a_n g, g on I_0
    assert torch.equal(
        ttq_dequantize(torch.tensor([[1, -1, 0]]), a_p.detach(), a_n.detach()), torch.tensor([[2.0, -3.0, 0.0]])
    )
