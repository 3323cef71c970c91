from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchslim.core.errors import DataError
from torchslim.measure import evaluate


def identity_classifier() -> nn.Linear:
    layer = nn.Linear(3, 3, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(3))
    return layer


def test_known_accuracy_and_loss() -> None:
    model = identity_classifier()
    x1 = torch.eye(3)
    y1 = torch.tensor([0, 1, 2])  # all right
    x2 = torch.eye(3)[[0, 1, 2, 0, 1]]
    y2 = torch.tensor([0, 1, 0, 2, 2])  # 2 of 5 right
    stats = evaluate(model, [(x1, y1), (x2, y2)])
    assert stats.samples == 8
    assert stats.accuracy == pytest.approx(5 / 8)
    expected_loss = (F.cross_entropy(x1, y1, reduction="sum") + F.cross_entropy(x2, y2, reduction="sum")) / 8
    assert stats.loss == pytest.approx(float(expected_loss))
    assert evaluate(model, [(x1, y1), (x2, y2)], max_batches=1).accuracy == 1.0


def test_dict_and_text_inputs(toys: SimpleNamespace) -> None:
    model = toys.DictModel()
    batch = ({"x": torch.randn(4, 4), "y": torch.randn(4, 2)}, torch.tensor([0, 1, 2, 0]))
    with torch.no_grad():
        predicted = model(**batch[0]).logits.argmax(1)
    stats = evaluate(model, [batch])
    assert stats.accuracy == pytest.approx(float((predicted == batch[1]).float().mean()))

    text = toys.TextModel()
    with torch.no_grad():
        text.fc.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))  # class 0 always wins (len > 0)
        text.fc.bias.zero_()
    stats = evaluate(text, [(["abc", "aa"], torch.tensor([0, 1]))])
    assert stats.accuracy == 0.5 and stats.samples == 2


def test_bad_loaders_fail_clearly() -> None:
    with pytest.raises(DataError, match="empty"):
        evaluate(identity_classifier(), [])
    with pytest.raises(DataError, match="pair"):
        evaluate(identity_classifier(), [torch.eye(3)])
