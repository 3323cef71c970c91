from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn
from torch.nn.utils import parametrize, prune

from torchslim.measure import count_layer_parameters, count_nonzero, count_parameters


class Mask(nn.Module):
    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask


def test_lenet_counts_match_the_architecture(toys: SimpleNamespace) -> None:
    model = toys.lenet_300_100()
    expected = 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    assert expected == 266_610
    assert count_parameters(model) == expected
    assert count_nonzero(model) == expected
    layers = count_layer_parameters(model)
    assert list(layers) == ["1", "3", "5"]
    assert layers["1"].params == 235_500 and layers["1"].type == "Linear"
    assert layers["5"].sparsity == 0.0


def test_shared_parameters_are_counted_once() -> None:
    a, b = nn.Linear(8, 8), nn.Linear(8, 8)
    b.weight = a.weight
    model = nn.Sequential(a, b)
    assert count_parameters(model) == 64 + 8 + 8
    assert count_nonzero(model) == 64 + 8 + 8
    layers = count_layer_parameters(model)
    assert layers["0"].params == 72 and layers["1"].params == 8
    assert sum(layer.params for layer in layers.values()) == count_parameters(model)


def test_parametrized_mask_counts_effective_nonzeros(toys: SimpleNamespace) -> None:
    model = toys.lenet_300_100()
    fc = model[1]
    mask = (torch.rand_like(fc.weight) > 0.7).float()
    zeros = int((mask == 0).sum())
    parametrize.register_parametrization(fc, "weight", Mask(mask))
    assert count_parameters(model) == 266_610  # stored originals are unchanged
    assert count_nonzero(model) == 266_610 - zeros
    layers = count_layer_parameters(model)
    assert "1" in layers and not any("parametrizations" in name for name in layers)
    assert layers["1"].nonzero == 235_500 - zeros
    assert abs(layers["1"].sparsity - zeros / 235_500) < 1e-12


def test_prune_style_weight_orig_and_mask(toys: SimpleNamespace) -> None:
    model = toys.lenet_300_100()
    prune.l1_unstructured(model[3], "weight", amount=0.3)
    pruned = round(0.3 * 30_000)
    assert count_parameters(model) == 266_610
    assert count_nonzero(model) == 266_610 - pruned
    assert count_layer_parameters(model)["3"].nonzero == 30_100 - pruned


def test_root_parameters_are_reported_under_root() -> None:
    class Root(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.tensor([0.0, 2.0, 3.0]))
            self.fc = nn.Linear(3, 3)

    layers = count_layer_parameters(Root())
    assert layers["(root)"].params == 3 and layers["(root)"].nonzero == 2
