"""A small trained CNN on sklearn digits (8x8) that the search tests compress in seconds."""

from __future__ import annotations

import torch
from torch import nn

from torchslim.data import load_splits
from torchslim.train import TrainConfig, train


class DigitsCNN(nn.Module):
    """conv8-conv16-fc32-fc10 for 1x8x8 digits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16 * 16, 32)
        self.classifier = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.classifier(torch.relu(self.fc(x.flatten(1))))


def digits_splits(seed: int = 0):
    return load_splits("digits", batch_size=64, seed=seed)


def trained_digits_cnn(splits, *, epochs: int = 6) -> nn.Module:
    torch.manual_seed(0)
    model = DigitsCNN()
    train(model, splits.train, config=TrainConfig(epochs=epochs, lr=3e-3), seed=0, quiet=True)
    return model.eval()
