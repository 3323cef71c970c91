from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch

from torchslim.measure import compare_models, cosine, kl_divergence, sqnr_db


def test_sqnr_by_hand() -> None:
    # signal 1 + 4 + 9 = 14, noise (3 - 2)^2 = 1
    assert sqnr_db([1.0, 2.0, 3.0], [1.0, 2.0, 2.0]) == pytest.approx(10 * math.log10(14))
    assert sqnr_db([1.0, 2.0], [1.0, 2.0]) == math.inf
    # halving every value: noise = signal / 4 -> 10 log10(4) = 6.02 dB
    assert sqnr_db([2.0, -4.0], [1.0, -2.0]) == pytest.approx(6.0206, abs=1e-4)


def test_cosine_by_hand() -> None:
    assert cosine([1.0, 0.0], [0.0, 1.0]) == pytest.approx(0.0)
    assert cosine([1.0, 1.0], [2.0, 2.0]) == pytest.approx(1.0)
    assert cosine([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == pytest.approx(32 / math.sqrt(14 * 77))
    assert cosine([1.0, 0.0], [-1.0, 0.0]) == pytest.approx(-1.0)


def test_kl_by_hand() -> None:
    p = torch.log(torch.tensor([0.5, 0.5]))
    q = torch.log(torch.tensor([0.25, 0.75]))
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert kl_divergence(p, q) == pytest.approx(expected)
    assert kl_divergence(p, p) == pytest.approx(0.0, abs=1e-15)
    # averaged over rows
    two = kl_divergence(torch.stack([p, p]), torch.stack([q, p]))
    assert two == pytest.approx(expected / 2)


def test_a_model_agrees_with_itself(toys: SimpleNamespace) -> None:
    model = toys.lenet_300_100()
    x = torch.randn(16, 1, 28, 28)
    agreement = compare_models(model, model, x)
    assert agreement.top1_agreement == 1.0
    assert agreement.sqnr_db == math.inf
    assert agreement.cosine == pytest.approx(1.0)
    assert agreement.kl_divergence == pytest.approx(0.0, abs=1e-12)
    assert agreement.samples == 16


def test_a_perturbed_copy_over_a_loader(toys: SimpleNamespace) -> None:
    model = toys.lenet_300_100()
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    loader = [(torch.randn(8, 1, 28, 28), torch.zeros(8, dtype=torch.long)) for _ in range(3)]
    agreement = compare_models(model, other, loader)
    assert agreement.samples == 24
    assert 0.0 <= agreement.top1_agreement <= 1.0
    assert 0 < agreement.sqnr_db < math.inf
    assert agreement.kl_divergence > 0
    assert compare_models(model, other, loader, max_batches=1).samples == 8
