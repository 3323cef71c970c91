"""Small Fashion-MNIST models: LeNet-300-100, LeNet-5 and a two-conv CNN.

All take ``[B, 1, 28, 28]`` float images and return ``[B, num_classes]`` logits. Submodules have
plain, stable names (``features``, ``fc``, ``classifier``) so `Targets` patterns such as
``exclude: [classifier]`` select what they say, and every model is built from standard ``nn``
modules only (traceable by ``torch.fx`` and by torch-pruning's dependency graph).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from torchslim.core.errors import ModelError


def check_positive_int(value: Any, param: str, model: str) -> int:
    """Return `value` as an int, or raise `ModelError` naming `param` when it is not an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelError(f"{model}: {param} must be an integer >= 1, got {value!r}.")
    return int(value)


def check_int_list(value: Any, param: str, model: str, *, length: int | None = None) -> tuple[int, ...]:
    """Return `value` (a list/tuple of ints >= 1) as a tuple, or raise `ModelError` naming `param`."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ModelError(f"{model}: {param} must be a list of integers, got {value!r}.")
    out = tuple(check_positive_int(v, f"{param}[{i}]", model) for i, v in enumerate(value))
    if length is not None and len(out) != length:
        raise ModelError(f"{model}: {param} must have {length} entries, got {len(out)}: {list(out)}.")
    if not out:
        raise ModelError(f"{model}: {param} must not be empty.")
    return out


class LeNet300100(nn.Module):
    """LeNet-300-100: a fully connected 784-300-100-10 network with ReLU (LeCun et al. 1998).

    Layers: ``flatten``, ``fc1`` Linear(784, 300), ``relu1``, ``fc2`` Linear(300, 100), ``relu2``,
    ``classifier`` Linear(100, num_classes). 266,610 parameters for 10 classes. The standard
    benchmark of the lottery-ticket (Frankle & Carbin 2019) and deep-compression papers.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(28 * 28, 300)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(300, 100)
        self.relu2 = nn.ReLU()
        self.classifier = nn.Linear(100, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu1(self.fc1(self.flatten(x)))
        x = self.relu2(self.fc2(x))
        return self.classifier(x)


class LeNet5(nn.Module):
    """LeNet-5 for 28x28 inputs (LeCun, Bottou, Bengio & Haffner 1998, "Gradient-based learning
    applied to document recognition").

    ``features``: conv1 Conv2d(1, 6, 5, padding=2) -> ReLU -> MaxPool 2 -> conv2 Conv2d(6, 16, 5) ->
    ReLU -> MaxPool 2 (16x5x5); ``flatten``; ``fc``: Linear(400, 120) -> ReLU -> Linear(120, 84) ->
    ReLU; ``classifier`` Linear(84, num_classes). 61,706 parameters for 10 classes.

    The common modern variant: ReLU and max pooling instead of the paper's scaled tanh and
    trainable subsampling, and a fully connected C3 instead of its partial connection table.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict(
                [
                    ("conv1", nn.Conv2d(1, 6, kernel_size=5, padding=2)),
                    ("relu1", nn.ReLU()),
                    ("pool1", nn.MaxPool2d(2)),
                    ("conv2", nn.Conv2d(6, 16, kernel_size=5)),
                    ("relu2", nn.ReLU()),
                    ("pool2", nn.MaxPool2d(2)),
                ]
            )
        )
        self.flatten = nn.Flatten()
        self.fc = nn.Sequential(
            OrderedDict(
                [
                    ("fc1", nn.Linear(16 * 5 * 5, 120)),
                    ("relu1", nn.ReLU()),
                    ("fc2", nn.Linear(120, 84)),
                    ("relu2", nn.ReLU()),
                ]
            )
        )
        self.classifier = nn.Linear(84, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.fc(self.flatten(self.features(x))))


class FashionCNN(nn.Module):
    """A small two-conv CNN for Fashion-MNIST (the ~420k-parameter baseline of DATA.md).

    ``features``: conv1 Conv2d(1, c1, 3, padding=1) -> ReLU -> MaxPool 2 -> conv2 Conv2d(c1, c2, 3,
    padding=1) -> ReLU -> MaxPool 2 (c2x7x7); ``flatten``; ``fc``: Linear(c2*49, hidden) -> ReLU;
    ``classifier`` Linear(hidden, num_classes). With the defaults ``channels=(32, 64)``,
    ``hidden=128`` and 10 classes: 421,642 parameters; ~87.5% test accuracy after one Adam epoch.
    Smaller ``channels``/``hidden`` give distillation students of the same shape.
    """

    def __init__(self, num_classes: int = 10, channels: Sequence[int] = (32, 64), hidden: int = 128) -> None:
        super().__init__()
        c1, c2 = channels
        self.features = nn.Sequential(
            OrderedDict(
                [
                    ("conv1", nn.Conv2d(1, c1, kernel_size=3, padding=1)),
                    ("relu1", nn.ReLU()),
                    ("pool1", nn.MaxPool2d(2)),
                    ("conv2", nn.Conv2d(c1, c2, kernel_size=3, padding=1)),
                    ("relu2", nn.ReLU()),
                    ("pool2", nn.MaxPool2d(2)),
                ]
            )
        )
        self.flatten = nn.Flatten()
        self.fc = nn.Sequential(
            OrderedDict(
                [
                    ("fc1", nn.Linear(c2 * 7 * 7, hidden)),
                    ("relu1", nn.ReLU()),
                ]
            )
        )
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.fc(self.flatten(self.features(x))))


def build_lenet_300_100(*, num_classes: int, pretrained: bool) -> nn.Module:
    """LeNet-300-100 (LeCun et al. 1998): 784-300-100-num_classes MLP, 266,610 params for 10 classes.

    No pretrained weights ship with torchslim; `pretrained` is accepted and ignored (random init).
    """
    return LeNet300100(check_positive_int(num_classes, "num_classes", "lenet-300-100"))


def build_lenet5(*, num_classes: int, pretrained: bool) -> nn.Module:
    """LeNet-5 (LeCun et al. 1998) for 1x28x28, ReLU/max-pool variant: 61,706 params for 10 classes.

    No pretrained weights ship with torchslim; `pretrained` is accepted and ignored (random init).
    """
    return LeNet5(check_positive_int(num_classes, "num_classes", "lenet5"))


def build_fmnist_cnn(
    *, num_classes: int, pretrained: bool, channels: Sequence[int] = (32, 64), hidden: int = 128
) -> nn.Module:
    """Two-conv Fashion-MNIST CNN (conv32-conv64-fc128-fc10): 421,642 params with the defaults.

    `channels` (two ints) and `hidden` shrink or grow it (e.g. for distillation students).
    No pretrained weights ship with torchslim; `pretrained` is accepted and ignored (random init).
    """
    name = "fmnist-cnn"
    return FashionCNN(
        check_positive_int(num_classes, "num_classes", name),
        check_int_list(channels, "channels", name, length=2),
        check_positive_int(hidden, "hidden", name),
    )
