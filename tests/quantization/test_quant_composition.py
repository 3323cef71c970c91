"""Quantizers by composition: levels x granularity x range estimator x gradient estimator."""

from __future__ import annotations

import pytest
import torch

from torchslim.core.errors import UnknownNameError
from torchslim.quantization import (
    GRADIENTS,
    LEVELS,
    RANGES,
    STE,
    ClippedSTE,
    Granularity,
    LSQGradient,
    UniformLevels,
    WeightQuantizer,
    WeightSpec,
    fake_quantize,
    make_range,
    quantize,
    weight_qparams,
)
from torchslim.quantization.gptq import gptq_quantize
from torchslim.quantization.levels import Levels
from torchslim.quantization.ranges import GPTQRange, LearnedRange, MinMaxRange, MSERange, resolve_range


def test_registries_list_the_parts():
    assert {"uniform", "kmeans", "pow2", "apot"} <= set(LEVELS.names())
    assert RANGES.names() == ["gptq", "learned", "minmax", "mse", "percentile"]
    assert GRADIENTS.names() == ["clipped_ste", "lsq", "ste"]
    assert isinstance(UniformLevels(bits=4), Levels)
    with pytest.raises(UnknownNameError, match="Did you mean 'uniform'"):
        LEVELS.entry("unifrom")
    with pytest.raises(UnknownNameError, match="quantization levels"):
        WeightSpec(8, True, Granularity.per_tensor(), "no-such-levels")


@pytest.mark.parametrize("name", ["minmax", "percentile", "mse"])
@pytest.mark.parametrize("bits", [1, 3, 8])
def test_range_estimators_reproduce_the_functional_math(name, bits):
    torch.manual_seed(0)
    w = torch.randn(16, 40)
    g = Granularity.per_channel(0)
    q = WeightQuantizer(UniformLevels(bits=bits, symmetric=False), g, make_range(name, percentile=99.0))
    codes, scale, zp = q.quantize(w)
    ref_scale, ref_zp = weight_qparams(w, bits=bits, symmetric=False, granularity=g, method=name, percentile=99.0)
    assert torch.equal(scale, ref_scale) and torch.equal(zp, ref_zp)
    assert torch.equal(codes, quantize(w, ref_scale, ref_zp, bits=bits, granularity=g))


def test_gptq_range_uses_the_hessian_and_falls_back_without_one():
    torch.manual_seed(0)
    w, x = torch.randn(8, 32), torch.randn(256, 32)
    h = 2 * x.t() @ x / x.shape[0]
    g = Granularity.per_group(8)
    wq = WeightQuantizer(UniformLevels(bits=3), g, GPTQRange(block_size=16, damp=0.02))
    codes, scale, zp = wq.quantize(w, hessian=h)
    ref = gptq_quantize(w, h, spec=WeightSpec(3, True, g), block_size=16, damp=0.02, range_method="mse")
    assert all(torch.equal(a, b) for a, b in zip((codes, scale, zp), ref, strict=True))
    plain = wq.quantize(w)  # no Hessian: round to nearest on the min-max range
    assert all(
        torch.equal(a, b) for a, b in zip(plain, WeightQuantizer(UniformLevels(bits=3), g).quantize(w), strict=True)
    )


def test_learned_range_starts_where_lsq_starts():
    w = torch.randn(8, 32, generator=torch.Generator().manual_seed(1))
    g = Granularity.per_channel(0)
    for bits, start in ((4, MSERange()), (8, MinMaxRange())):
        levels = UniformLevels(bits=bits)
        learned = LearnedRange().qparams(w, levels=levels, granularity=g)
        assert all(
            torch.equal(a, b) for a, b in zip(learned, start.qparams(w, levels=levels, granularity=g), strict=True)
        )


def test_auto_range():
    assert resolve_range("auto", bits=4, mode="ptq", has_data=True) == "gptq"
    assert resolve_range("auto", bits=4, mode="ptq", has_data=False) == "mse"
    assert resolve_range("auto", bits=8, mode="ptq", has_data=True) == "mse"
    assert resolve_range("auto", bits=4, mode="qat", has_data=True) == "mse"
    assert resolve_range("minmax", bits=4, mode="ptq", has_data=True) == "minmax"


def test_gradient_estimators_share_the_forward_and_differ_in_the_backward():
    g = Granularity.per_tensor()
    scale, zp = torch.tensor(0.1), torch.tensor(0)
    x = torch.tensor([-20.0, -0.26, 0.04, 0.31, 20.0])
    outs, grads = {}, {}
    for est in (STE(), ClippedSTE(), LSQGradient()):
        xi = x.clone().requires_grad_(True)
        s = scale.clone().requires_grad_(True)
        y = est.fake_quantize(xi, s, zp, bits=4, granularity=g)
        y.sum().backward()
        outs[est.name], grads[est.name] = y.detach(), (xi.grad, s.grad)
    reference = fake_quantize(x, scale, zp, bits=4, granularity=g)
    assert all(torch.equal(o, reference) for o in outs.values())
    assert torch.equal(grads["ste"][0], torch.ones(5))  # identity, also outside the range
    assert torch.equal(grads["clipped_ste"][0], torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0]))
    assert torch.equal(grads["lsq"][0], grads["clipped_ste"][0])
    assert grads["lsq"][1] is not None and not torch.equal(grads["lsq"][1], grads["clipped_ste"][1])  # LSQ scales it
