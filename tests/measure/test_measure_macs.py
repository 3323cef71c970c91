from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from torchslim.measure import count_macs


def test_linear_784_300_is_235200_macs_per_sample() -> None:
    layer = nn.Linear(784, 300)
    assert count_macs(layer, torch.randn(1, 784)).total == 235_200
    assert count_macs(layer, torch.randn(4, 784)).total == 4 * 235_200


def test_lenet_per_layer(toys: SimpleNamespace) -> None:
    macs = count_macs(toys.lenet_300_100(), torch.randn(1, 1, 28, 28))
    assert macs.per_layer == {"1": 784 * 300, "3": 300 * 100, "5": 100 * 10}
    assert macs.total == 266_200


@pytest.mark.parametrize(
    ("conv", "shape", "expected"),
    [
        # c_out * h_out * w_out * (c_in / groups) * k * k
        (nn.Conv2d(3, 16, 3, padding=1), (1, 3, 32, 32), 16 * 32 * 32 * 3 * 9),
        (nn.Conv2d(3, 16, 3), (2, 3, 10, 10), 2 * 16 * 8 * 8 * 3 * 9),
        (nn.Conv2d(8, 8, 3, padding=1, groups=8), (1, 8, 16, 16), 8 * 16 * 16 * 1 * 9),
        (nn.Conv2d(4, 6, 1, stride=2), (1, 4, 8, 8), 6 * 4 * 4 * 4),
    ],
)
def test_conv2d_against_the_formula(conv: nn.Conv2d, shape: tuple[int, ...], expected: int) -> None:
    assert count_macs(conv, torch.randn(*shape)).total == expected


def test_cnn_per_layer_sums_to_total(toys: SimpleNamespace) -> None:
    model = toys.SmallCNN(width=4)
    macs = count_macs(model, torch.randn(1, 1, 8, 8))
    assert macs.per_layer["conv1"] == 4 * 8 * 8 * 1 * 9
    assert macs.per_layer["conv2"] == 8 * 4 * 4 * 4 * 9
    assert macs.per_layer["classifier"] == 8 * 10
    assert sum(macs.per_layer.values()) == macs.total


def test_dict_inputs_and_root_work(toys: SimpleNamespace) -> None:
    model = toys.DictModel()
    macs = count_macs(model, {"x": torch.randn(2, 4), "y": torch.randn(2, 2)})
    assert macs.per_layer == {"a": 2 * 4 * 3, "b": 2 * 2 * 3}

    class RootMatmul(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(5, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.fc(x)
            return h @ h.T  # done in the root's own forward

    macs = count_macs(RootMatmul(), torch.randn(3, 5))
    assert macs.per_layer == {"fc": 3 * 5 * 5, "(root)": 3 * 5 * 3}


def test_text_model_is_called_through_tokenize(toys: SimpleNamespace) -> None:
    assert count_macs(toys.TextModel(), ["abc", "aaa", "b"]).total == 3 * 2 * 2


def test_modes_are_restored(toys: SimpleNamespace) -> None:
    model = toys.SmallCNN()
    model.train()
    model.bn1.eval()  # a mixed state must come back exactly
    count_macs(model, torch.randn(1, 1, 8, 8))
    assert model.training and model.conv1.training and not model.bn1.training
    assert torch.is_grad_enabled()


def test_attention_products_count_on_cpu() -> None:
    """CPU runs SDPA as a fused kernel FlopCounterMode's registry misses; its MACs must still count
    and belong to the module whose forward calls it."""

    class Attention(nn.Module):
        def __init__(self, dim: int = 16, heads: int = 2) -> None:
            super().__init__()
            self.heads = heads
            self.qkv = nn.Linear(dim, 3 * dim)
            self.proj = nn.Linear(dim, dim)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, s, d = x.shape
            q, k, v = self.qkv(x).view(b, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
            return self.proj(out.transpose(1, 2).reshape(b, s, d))

    model = nn.Sequential(Attention())
    macs = count_macs(model, torch.randn(1, 10, 16))
    # q @ k^T and attn @ v: each batch * heads * s * s * head_dim
    assert macs.per_layer["0"] == 2 * (1 * 2 * 10 * 10 * 8)
    assert macs.per_layer["0.qkv"] == 10 * 16 * 48
    assert macs.per_layer["0.proj"] == 10 * 16 * 16
    assert macs.total == sum(macs.per_layer.values())
