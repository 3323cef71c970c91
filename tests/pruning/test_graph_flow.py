"""graph/flow.py: where a layer's output goes, through pass-through operations."""

from __future__ import annotations

import torch
from torch import nn

from torchslim.graph.flow import outputs_reaching_others


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.c = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        h = self.pool(torch.relu(self.a(x)))  # a -> relu -> pool -> b and c: consumers only
        y = self.b(h) + self.c(h)  # b and c feed an Add
        return self.fc(torch.flatten(y.mean(dim=(2, 3)), 1))


def test_outputs_reaching_anything_but_the_consumers():
    net = Net()
    assert outputs_reaching_others(net, {"a", "b", "c"}, {"a", "b", "c", "fc"}) == {"b", "c"}
    # without c among the consumers, a's output also reaches a layer that will not quantize its input
    assert outputs_reaching_others(net, {"a"}, {"b", "fc"}) == {"a"}


def test_untraceable_models_give_none():
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(1, 1, 1)

        def forward(self, x):
            return self.a(x) if float(x.sum()) > 0 else x

    assert outputs_reaching_others(Branchy(), {"a"}, {"a"}) is None
