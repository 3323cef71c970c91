"""Measurement reads a compressed layer only through the public layer contract.

The fake layer (tests/measure/fake_layer.py) implements ``CompressedLayer`` and nothing else of the
quantization package: the bits, parameter counts and energy below can only come from its
``storage_bits()``, ``stored_weight()`` and ``effective_weight()``.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from torchslim.core.layer import CompressedLayer, compressed_layers
from torchslim.measure import analyze, count_nonzero, count_parameters, estimate_energy


def model_with_fake(toys: SimpleNamespace, *, bits: int, input_bits: int | None) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(), toys.FakeCompressedLinear.from_linear(nn.Linear(784, 10), bits=bits, input_bits=input_bits)
    )


def test_the_fake_implements_only_the_contract(toys: SimpleNamespace) -> None:
    layer = model_with_fake(toys, bits=4, input_bits=None)[1]
    assert isinstance(layer, CompressedLayer)
    for private in ("weight_q", "weight_bits", "activation_bits", "stored_codes", "torchslim_export_state"):
        assert not hasattr(layer, private)


def test_bits_come_from_storage_bits(toys: SimpleNamespace) -> None:
    x = torch.randn(1, 1, 28, 28)
    stats = analyze(
        model_with_fake(toys, bits=4, input_bits=None), example_input=x, repeats=1, warmup=0, energy_seconds=0.01
    )
    row = next(layer for layer in stats.layers if layer.name == "1")
    assert row.weight_bits == 4
    assert row.type == "FakeCompressedLinear"
    estimate = estimate_energy(model_with_fake(toys, bits=4, input_bits=None), x)
    (layer,) = estimate.per_layer
    assert (layer.weight_bits, layer.activation_bits, layer.compute_class) == (4, 32, "fp32")  # float input
    assert layer.weight_bytes == pytest.approx((784 * 10 + 10) * 4 / 8)  # codes and bias at 4 bits
    low = estimate_energy(model_with_fake(toys, bits=4, input_bits=2), x)
    assert (low.per_layer[0].activation_bits, low.per_layer[0].compute_class) == (2, "int4")
    assert low.compute_uj < estimate.compute_uj


def test_counts_come_from_stored_and_effective_weight(toys: SimpleNamespace) -> None:
    model = model_with_fake(toys, bits=2, input_bits=None)
    ((name, layer),) = compressed_layers(model)
    assert name == "1"
    assert count_parameters(model) == layer.stored_weight().numel() + 10
    expected_nonzero = int(layer.effective_weight().count_nonzero()) + int(model[1].bias.count_nonzero())
    assert count_nonzero(model) == expected_nonzero
    assert 0 < expected_nonzero < 7850  # 2-bit codes of a random weight have zeros
