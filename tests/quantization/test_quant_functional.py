"""Pure quantization math: properties (hypothesis) and exact small cases."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchslim.core.errors import ConfigError
from torchslim.quantization import (
    Granularity,
    binary_scale,
    choose_qparams,
    dequantize,
    fake_quantize,
    lsq_fake_quantize,
    min_max,
    pack_codes,
    packed_nbytes,
    qrange,
    quantize,
    quantize_tensor,
    sqnr_db,
    unpack_codes,
)

SETTINGS = settings(max_examples=60, deadline=None)

granularities = st.one_of(
    st.just(Granularity.per_tensor()),
    st.integers(0, 2).map(Granularity.per_channel),
    st.tuples(st.integers(1, 7), st.integers(0, 2)).map(lambda t: Granularity.per_group(*t)),
)


def tensors(seed: int, shape=(5, 6, 3), scale: float = 3.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g) * scale).float()


@SETTINGS
@given(seed=st.integers(0, 10_000), bits=st.integers(2, 8), symmetric=st.booleans(), g=granularities)
def test_round_trip_error_is_at_most_half_a_step(seed, bits, symmetric, g):
    x = tensors(seed)
    codes, scale, zp = quantize_tensor(x, bits=bits, symmetric=symmetric, granularity=g)
    qmin, qmax = qrange(bits)
    assert codes.dtype == torch.int8 and codes.shape == x.shape
    assert int(codes.min()) >= qmin and int(codes.max()) <= qmax
    approx = dequantize(codes, scale, zp, granularity=g)
    step = g.expand(scale, x.shape)
    # every value of a min-max range lies inside the grid, so rounding is the only error
    assert ((approx - x).abs() <= step / 2 + 1e-6 * x.abs().max()).all()


@SETTINGS
@given(seed=st.integers(0, 10_000), bits=st.integers(2, 8), symmetric=st.booleans())
def test_zero_is_exact_and_symmetric_zero_point_is_zero(seed, bits, symmetric):
    x = tensors(seed, shape=(4, 9)).abs() + 0.1  # all positive: the range must be widened to contain 0
    scale, zp = choose_qparams(*min_max(x), bits=bits, symmetric=symmetric)
    zero = dequantize(quantize(torch.zeros(()), scale, zp, bits=bits), scale, zp)
    assert float(zero) == 0.0
    if symmetric:
        assert int(zp) == 0


@SETTINGS
@given(seed=st.integers(0, 10_000), g=granularities)
def test_binary_outputs_are_plus_minus_alpha(seed, g):
    x = tensors(seed)
    codes, scale, zp = quantize_tensor(x, bits=1, granularity=g)
    assert set(codes.unique().tolist()) <= {-1, 1}
    approx = dequantize(codes, scale, zp, granularity=g)
    alpha = g.expand(scale, x.shape)
    assert torch.equal(approx.abs(), alpha)
    assert torch.equal(torch.sign(approx), torch.where(x >= 0, 1.0, -1.0))
    # alpha = mean |x| per group is the L2-optimal scale for a fixed sign pattern
    expected = binary_scale(x, g)
    torch.testing.assert_close(scale, expected)


@SETTINGS
@given(seed=st.integers(0, 10_000), g=granularities)
def test_granularity_rows_round_trip_and_param_shapes(seed, g):
    x = tensors(seed)
    rows = g.rows(x)
    assert torch.equal(g.unrows(rows, x.shape), x)
    lo, hi = min_max(x, g)
    assert tuple(lo.shape) == g.param_shape(x.shape)
    assert g.expand(lo, x.shape).shape == x.shape
    assert (g.expand(lo, x.shape) <= x).all() and (x <= g.expand(hi, x.shape)).all()


@SETTINGS
@given(seed=st.integers(0, 10_000), bits=st.integers(1, 8), n=st.integers(1, 300))
def test_packing_round_trip_and_size(seed, bits, n):
    g = torch.Generator().manual_seed(seed)
    qmin, qmax = qrange(bits)
    if bits == 1:
        codes = torch.where(torch.rand(n, generator=g) < 0.5, -1, 1).to(torch.int8)
    else:
        codes = torch.randint(qmin, qmax + 1, (n,), generator=g).to(torch.int8)
    packed = pack_codes(codes, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == packed_nbytes(n, bits) == math.ceil(n * bits / 8)
    assert torch.equal(unpack_codes(packed, bits, n), codes)


def test_four_bit_codes_take_half_a_byte():
    codes = torch.randint(-8, 8, (1000,)).to(torch.int8)
    assert pack_codes(codes, 4).numel() == 500
    assert pack_codes(codes, 8).numel() == 1000
    assert pack_codes(torch.randint(-2, 2, (1000,)).to(torch.int8), 2).numel() == 250
    with pytest.raises(ValueError, match="outside the 4-bit range"):
        pack_codes(torch.tensor([9], dtype=torch.int8), 4)
    with pytest.raises(ValueError, match="cannot hold"):
        unpack_codes(torch.zeros(3, dtype=torch.uint8), 4, 10)


def test_exact_small_case_matches_the_formula():
    x = torch.tensor([-1.0, -0.26, 0.0, 0.24, 0.5, 1.0])
    scale, zp = choose_qparams(x.min(), x.max(), bits=3, symmetric=True)  # qmax = 3
    assert float(scale) == pytest.approx(1 / 3)
    codes = quantize(x, scale, zp, bits=3)
    assert codes.tolist() == [-3, -1, 0, 1, 2, 3]  # 0.5 / (1/3) = 1.5 rounds half to even -> 2
    scale, zp = choose_qparams(torch.tensor(0.0), torch.tensor(2.55), bits=8, symmetric=False)
    assert int(zp) == -128 and float(scale) == pytest.approx(0.01)


def test_bits_outside_1_to_8_are_rejected():
    for bits in (0, 9, -1):
        with pytest.raises(ConfigError, match="out of range"):
            qrange(bits)
        with pytest.raises(ConfigError):
            quantize_tensor(torch.randn(4), bits=bits)
    with pytest.raises(ConfigError, match="integer"):
        qrange(2.5)


def test_per_channel_axis_that_does_not_exist():
    with pytest.raises(ConfigError, match="axis=3 does not exist.*shape \\[4, 5\\]"):
        quantize_tensor(torch.randn(4, 5), bits=8, granularity=Granularity.per_channel(3))
    with pytest.raises(ConfigError, match="granularity"):
        Granularity("per_row")
    with pytest.raises(ConfigError, match="group_size"):
        Granularity("per_group", group_size=0)
    # negative axes count from the end
    codes, scale, _ = quantize_tensor(torch.randn(4, 5), bits=8, granularity=Granularity.per_channel(-1))
    assert scale.shape == (5,)


def test_choose_qparams_rejects_nan_range():
    with pytest.raises(ValueError, match="NaN"):
        choose_qparams(torch.tensor(float("nan")), torch.tensor(1.0), bits=8)


def test_fake_quantize_straight_through_gradient():
    x = torch.tensor([-3.0, -0.4, 0.1, 0.7, 5.0], requires_grad=True)
    y = fake_quantize(x, torch.tensor(0.25), torch.tensor(0), bits=4)  # range [-2, 1.75]
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]  # clipped values pass no gradient
    assert y.detach().tolist() == [-2.0, -0.5, 0.0, 0.75, 1.75]


def test_lsq_step_size_gradient_matches_the_paper():
    x = torch.tensor([-3.0, -0.4, 0.1, 0.7, 5.0])
    s = torch.tensor(0.25, requires_grad=True)
    y = lsq_fake_quantize(x, s, 0, bits=4, grad_scale=1.0)
    y.sum().backward()
    v = x / 0.25
    inside = torch.round(v) - v
    expected = torch.where(v < -8, torch.tensor(-8.0), torch.where(v > 7, torch.tensor(7.0), inside)).sum()
    assert float(s.grad) == pytest.approx(float(expected), abs=1e-5)
    # default gradient scale g = 1 / sqrt(N * qmax)
    s2 = torch.tensor(0.25, requires_grad=True)
    lsq_fake_quantize(x, s2, 0, bits=4).sum().backward()
    assert float(s2.grad) == pytest.approx(float(expected) / math.sqrt(5 * 7), abs=1e-5)


def test_sqnr():
    ref = torch.ones(100)
    assert sqnr_db(ref, ref) == math.inf
    assert sqnr_db(ref, ref * 1.1) == pytest.approx(20.0)
