"""Loss formulas against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchslim.core.errors import ConfigError, ModelError
from torchslim.distillation import (
    FEATURE_LOSSES,
    AttentionMapMSE,
    AttentionTransferLoss,
    CosineLoss,
    HiddenStateMSE,
    HintLoss,
    KDLoss,
    feature_loss,
    kd_loss,
    make_adapter,
    soft_target_loss,
)


def _softmax(row, T=1.0):
    e = [math.exp(v / T) for v in row]
    return [v / sum(e) for v in e]


def _kl(p, q):
    return sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q, strict=True))


S = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
T_ = torch.tensor([[2.0, 1.0, 0.0], [0.5, 0.5, 2.0]])
Y = torch.tensor([1, 2])


def test_kd_at_temperature_one_and_alpha_one_is_the_kl_divergence():
    hand = sum(_kl(_softmax(t), _softmax(s)) for s, t in zip(S.tolist(), T_.tolist(), strict=True)) / 2
    assert kd_loss(S, T_, temperature=1.0, alpha=1.0).item() == pytest.approx(hand, rel=1e-5)
    expected = F.kl_div(F.log_softmax(S, 1), F.softmax(T_, 1), reduction="batchmean")
    torch.testing.assert_close(kd_loss(S, T_, Y, temperature=1.0, alpha=1.0), expected)


def test_soft_targets_are_scaled_by_temperature_squared():
    T = 4.0
    hand = sum(_kl(_softmax(t, T), _softmax(s, T)) for s, t in zip(S.tolist(), T_.tolist(), strict=True)) / 2
    assert soft_target_loss(S, T_, temperature=T).item() == pytest.approx(T * T * hand, rel=1e-5)
    # the T^2 factor keeps the soft gradient magnitude roughly constant in T (Hinton et al. section 2.1)
    s = S.clone().requires_grad_(True)
    soft_target_loss(s, T_, temperature=T).backward()
    p_s = torch.tensor([_softmax(r, T) for r in S.tolist()])
    p_t = torch.tensor([_softmax(r, T) for r in T_.tolist()])
    torch.testing.assert_close(s.grad, T * (p_s - p_t) / 2)


def test_alpha_mixes_hard_labels_and_soft_targets():
    ce = F.cross_entropy(S, Y)
    soft = soft_target_loss(S, T_, temperature=3.0)
    torch.testing.assert_close(kd_loss(S, T_, Y, temperature=3.0, alpha=0.3), 0.7 * ce + 0.3 * soft)
    torch.testing.assert_close(kd_loss(S, T_, Y, temperature=3.0, alpha=0.0), ce)
    torch.testing.assert_close(KDLoss(3.0, 0.3)(S, T_, Y), 0.7 * ce + 0.3 * soft)
    assert kd_loss(S, S, temperature=2.0, alpha=1.0).abs().item() < 1e-6


def test_kd_rejects_bad_input():
    with pytest.raises(ConfigError, match="temperature"):
        kd_loss(S, T_, Y, temperature=0.0)
    with pytest.raises(ConfigError, match="temperature"):
        KDLoss(temperature=-1.0)
    with pytest.raises(ConfigError, match="alpha"):
        kd_loss(S, T_, Y, alpha=1.5)
    with pytest.raises(ConfigError, match="labels"):
        kd_loss(S, T_, None, alpha=0.5)
    with pytest.raises(ModelError, match=r"\(2, 3\).*\(2, 4\)"):
        kd_loss(S, torch.zeros(2, 4), Y)


def test_fitnets_adapter_shapes():
    conv = make_adapter((2, 8, 5, 5), (2, 16, 5, 5))
    assert (
        isinstance(conv, nn.Conv2d) and conv.in_channels == 8 and conv.out_channels == 16 and conv.kernel_size == (1, 1)
    )
    lin = make_adapter((2, 7, 8), (2, 7, 12))
    assert isinstance(lin, nn.Linear) and (lin.in_features, lin.out_features) == (8, 12)
    assert make_adapter((2, 8, 5, 5), (2, 8, 3, 3)) is None
    assert HintLoss((2, 8, 5, 5), (2, 16, 5, 5))(torch.randn(2, 8, 5, 5), torch.randn(2, 16, 5, 5)).shape == ()
    assert HiddenStateMSE((2, 7, 8), (2, 7, 12)).adapter.bias is None
    with pytest.raises(ModelError, match="ranks"):
        HintLoss((2, 8, 5, 5), (2, 16))
    with pytest.raises(ModelError, match="dimension 1"):
        HintLoss((2, 7, 8), (2, 9, 8))


def test_hint_without_adapter_is_the_mean_squared_error_and_pools_space():
    s, t = torch.randn(2, 4, 6, 6), torch.randn(2, 4, 6, 6)
    loss = HintLoss(s.shape, t.shape)
    assert loss.adapter is None
    torch.testing.assert_close(loss(s, t), F.mse_loss(s, t))
    big = torch.randn(2, 4, 6, 6)
    small = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(HintLoss(big.shape, small.shape)(big, small), F.mse_loss(F.avg_pool2d(big, 2), small))


def test_token_mask_leaves_padding_out():
    s = torch.zeros(2, 5, 4)
    t = torch.zeros(2, 5, 4)
    t[:, 3:] = 100.0  # only padding differs
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 0, 0]])
    assert HiddenStateMSE(s.shape, t.shape)(s, t, mask).item() == 0.0
    assert HiddenStateMSE(s.shape, t.shape)(s, t).item() > 0


def test_attention_transfer_matches_hand_computation():
    s = torch.tensor([[[[1.0, 2.0], [0.0, 1.0]]]])  # [1, 1, 2, 2]
    t = torch.tensor(
        [
            [[[1.0, 0.0], [0.0, 0.0]]],
        ]
    )  # [1, 1, 2, 2]
    t = torch.cat([t, t], dim=1)  # two channels, same map
    qs = torch.tensor([1.0, 4.0, 0.0, 1.0])
    qs = qs / qs.norm()
    qt = torch.tensor([1.0, 0.0, 0.0, 0.0])
    hand = 500.0 * ((qs - qt) ** 2).mean()
    loss = AttentionTransferLoss(s.shape, t.shape)
    torch.testing.assert_close(loss(s, t), hand)
    assert not list(loss.parameters())
    x = torch.randn(2, 3, 4, 4)
    assert loss.__class__(x.shape, (2, 6, 4, 4))(x, torch.cat([2 * x, -2 * x], 1)).item() == pytest.approx(
        0.0, abs=1e-6
    )


def test_attention_map_mse_averages_heads():
    s, t = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    per_head = sum(F.mse_loss(s[:, i], t[:, i]) for i in range(3)) / 3
    torch.testing.assert_close(AttentionMapMSE(s.shape, t.shape)(s, t), per_head)
    with pytest.raises(ModelError, match="heads"):
        AttentionMapMSE((2, 2, 4, 4), (2, 3, 4, 4))


def test_cosine_loss_is_one_minus_cosine():
    a = torch.tensor([[[1.0, 0.0]], [[1.0, 1.0]]])  # [2, 1, 2]
    b = torch.tensor([[[0.0, 3.0]], [[-2.0, -2.0]]])
    loss = CosineLoss(a.shape, b.shape)
    assert loss(a, b).item() == pytest.approx((1.0 + 2.0) / 2)
    assert loss(a, 5 * a).item() == pytest.approx(0.0, abs=1e-6)


def test_feature_loss_registry():
    assert set(FEATURE_LOSSES) == {"hint", "attention", "hidden_mse", "attention_map", "cosine"}
    assert isinstance(feature_loss("cosine", (2, 4), (2, 4)), CosineLoss)
    with pytest.raises(ConfigError, match="Did you mean 'hint'"):
        feature_loss("hnt", (2, 4), (2, 4))
