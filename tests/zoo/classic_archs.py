"""Classic architectures written out small (torchvision and timm cannot be installed beside this
torch): the couplings a user's own model most often brings, each in the form its paper gives it.

* ShuffleNetV2 unit (Ma et al. 2018): channel split, a branch, concat, channel shuffle.
* DenseNet block (Huang et al. 2017): every layer reads the concatenation of all earlier outputs.
* Inception module (Szegedy et al. 2015): four parallel branches concatenated.
* SqueezeNet fire module (Iandola et al. 2016): squeeze 1x1, two expand convs concatenated.
* Squeeze-and-excitation (Hu et al. 2018): a channel gate from pooled features multiplies a residual branch.
* U-Net (Ronneberger et al. 2015): transposed-conv upsampling concatenated with the encoder's skip,
  a per-pixel output.
* A 1-D keyword-spotting CNN over MFCC frames (Conv1d, BatchNorm1d, depthwise-separable).
* An LSTM text classifier (Embedding, LSTM, Linear).
* Sub-pixel super-resolution (Shi et al. 2016): ``PixelShuffle`` turns channels into space.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tests.zoo.hand_archs import _img
from torch import nn


def _conv_bn(cin: int, cout: int, k: int = 3, *, groups: int = 1, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


class ShuffleUnit(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.branch = nn.Sequential(
            _conv_bn(half, half, 1),
            nn.Conv2d(half, half, 3, padding=1, groups=half, bias=False),
            nn.BatchNorm2d(half),
            _conv_bn(half, half, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep, work = x.chunk(2, dim=1)
        out = torch.cat([keep, self.branch(work)], dim=1)
        b, c, h, w = out.shape
        return out.view(b, 2, c // 2, h, w).transpose(1, 2).reshape(b, c, h, w)


class ShuffleNetV2Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = _conv_bn(3, 16, stride=2)
        self.units = nn.Sequential(ShuffleUnit(16), ShuffleUnit(16))
        self.last = _conv_bn(16, 32, 1)
        self.head = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.last(self.units(self.stem(x))).mean(dim=(2, 3)))


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, 4 * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(4 * growth)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.conv1(torch.relu(self.norm1(torch.cat(features, dim=1))))
        return self.conv2(torch.relu(self.norm2(x)))


class DenseNetTiny(nn.Module):
    def __init__(self, growth: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.layers = nn.ModuleList(DenseLayer(16 + i * growth, growth) for i in range(3))
        width = 16 + 3 * growth
        self.transition = nn.Sequential(
            nn.BatchNorm2d(width), nn.ReLU(), nn.Conv2d(width, width // 2, 1), nn.AvgPool2d(2)
        )
        self.head = nn.Linear(width // 2, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [self.stem(x)]
        for layer in self.layers:
            features.append(layer(features))
        return self.head(self.transition(torch.cat(features, dim=1)).mean(dim=(2, 3)))


class InceptionTiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = _conv_bn(3, 16)
        self.b1 = _conv_bn(16, 8, 1)
        self.b2 = nn.Sequential(_conv_bn(16, 8, 1), _conv_bn(8, 12))
        self.b3 = nn.Sequential(_conv_bn(16, 4, 1), _conv_bn(4, 6, 5))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), _conv_bn(16, 6, 1))
        self.head = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], dim=1)
        return self.head(y.mean(dim=(2, 3)))


class Fire(nn.Module):
    def __init__(self, cin: int, squeeze: int, expand: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.expand1 = nn.Conv2d(squeeze, expand, 1)
        self.expand3 = nn.Conv2d(squeeze, expand, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.relu(self.squeeze(x))
        return torch.relu(torch.cat([self.expand1(s), self.expand3(s)], dim=1))


class SqueezeNetTiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.fire1 = Fire(16, 8, 16)
        self.fire2 = Fire(32, 8, 16)
        self.classifier = nn.Conv2d(32, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fire2(self.fire1(torch.relu(self.stem(x))))
        return torch.relu(self.classifier(x)).mean(dim=(2, 3))


class SEBlock(nn.Module):
    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.conv = _conv_bn(channels, channels)
        self.fc1 = nn.Linear(channels, channels // reduction)
        self.fc2 = nn.Linear(channels // reduction, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(y.mean(dim=(2, 3))))))
        return torch.relu(x + y * gate[:, :, None, None])


class SENetTiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = _conv_bn(3, 16)
        self.blocks = nn.Sequential(SEBlock(16), SEBlock(16))
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean(dim=(2, 3)))


class UNetTiny(nn.Module):
    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.enc1 = nn.Sequential(_conv_bn(3, 8), _conv_bn(8, 8))
        self.enc2 = nn.Sequential(nn.MaxPool2d(2), _conv_bn(8, 16), _conv_bn(16, 16))
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.dec = nn.Sequential(_conv_bn(16, 8), _conv_bn(8, 8))
        self.out = nn.Conv2d(8, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.enc1(x)
        return self.out(self.dec(torch.cat([skip, self.up(self.enc2(skip))], dim=1)))


class KeywordSpotting1D(nn.Module):
    def __init__(self, mfcc: int = 10, classes: int = 12) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(mfcc, 32, 3, padding=1, bias=False), nn.BatchNorm1d(32), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv1d(32, 32, 3, padding=1, groups=32, bias=False), nn.BatchNorm1d(32), nn.ReLU())
        self.pw = nn.Sequential(nn.Conv1d(32, 48, 1, bias=False), nn.BatchNorm1d(48), nn.ReLU())
        self.head = nn.Linear(48, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pw(self.dw(self.stem(x))).mean(dim=2))


class LSTMClassifier(nn.Module):
    def __init__(self, vocab: int = 64, classes: int = 5) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 16)
        self.proj = nn.Linear(16, 16)
        self.lstm = nn.LSTM(16, 32, batch_first=True)
        self.head = nn.Linear(32, classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(torch.relu(self.proj(self.embed(ids))))
        return self.head(out[:, -1])


class SubPixelSR(nn.Module):
    def __init__(self, scale: int = 2) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 5, padding=2), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
        self.tail = nn.Conv2d(16, 3 * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.tail(self.body(x)))


def _frames() -> torch.Tensor:
    return torch.randn(2, 10, 49, generator=torch.Generator().manual_seed(0))


def _ids() -> torch.Tensor:
    return torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(0))


CLASSIC_ARCHS: dict[str, tuple[str, Callable[[], tuple[nn.Module, Any]]]] = {
    "shufflenet-v2": ("cnn", lambda: (ShuffleNetV2Tiny().eval(), _img())),
    "densenet": ("cnn", lambda: (DenseNetTiny().eval(), _img())),
    "inception": ("cnn", lambda: (InceptionTiny().eval(), _img())),
    "squeezenet": ("cnn", lambda: (SqueezeNetTiny().eval(), _img())),
    "se-resnet": ("cnn", lambda: (SENetTiny().eval(), _img())),
    "unet": ("segmentation", lambda: (UNetTiny().eval(), _img())),
    "kws-conv1d": ("sequence", lambda: (KeywordSpotting1D().eval(), _frames())),
    "lstm-text": ("sequence", lambda: (LSTMClassifier().eval(), _ids())),
    "subpixel-sr": ("cnn", lambda: (SubPixelSR().eval(), _img())),
}
