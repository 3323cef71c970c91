"""A small ResNet with BatchNorm for 1x28x28 images (He, Zhang, Ren & Sun 2016, "Deep residual
learning for image recognition"; the CIFAR-style 6n+2 layout with n=2, i.e. ResNet-14)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor, nn

from torchslim.models.small import check_int_list, check_positive_int


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN layers with an identity shortcut, or a 1x1 conv + BN shortcut when the
    stride or the channel count changes. Names: conv1, bn1, relu1, conv2, bn2, shortcut, relu2."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = nn.Sequential(
                OrderedDict(
                    [
                        ("conv", nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)),
                        ("bn", nn.BatchNorm2d(out_channels)),
                    ]
                )
            )
        else:
            self.shortcut = nn.Identity()
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class FashionResNet(nn.Module):
    """``stem`` (conv 3x3 1->w0, BN, ReLU), ``layer1..layer3`` (each `blocks` BasicBlocks at widths
    w0/w1/w2, strides 1/2/2: 28 -> 28 -> 14 -> 7), ``pool`` global average, ``flatten``,
    ``classifier`` Linear(w2, num_classes)."""

    def __init__(self, num_classes: int = 10, widths: Sequence[int] = (16, 32, 64), blocks: int = 2) -> None:
        super().__init__()
        w0 = widths[0]
        self.stem = nn.Sequential(
            OrderedDict(
                [
                    ("conv", nn.Conv2d(1, w0, 3, padding=1, bias=False)),
                    ("bn", nn.BatchNorm2d(w0)),
                    ("relu", nn.ReLU()),
                ]
            )
        )
        in_ch = w0
        for i, (width, stride) in enumerate(zip(widths, (1, 2, 2), strict=False), start=1):
            stage = []
            for j in range(blocks):
                stage.append(BasicBlock(in_ch, width, stride if j == 0 else 1))
                in_ch = width
            self.add_module(f"layer{i}", nn.Sequential(*stage))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(in_ch, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for i in (1, 2, 3):  # stages are added by name (layer1..3) so state-dict keys stay stable
            x = self.get_submodule(f"layer{i}")(x)
        out: Tensor = self.classifier(self.flatten(self.pool(x)))
        return out


def build_fmnist_resnet(
    *, num_classes: int, pretrained: bool, widths: Sequence[int] = (16, 32, 64), blocks: int = 2
) -> nn.Module:
    """Small ResNet (He et al. 2016) for 1x28x28: stem conv3x3 -> 16, three stages of `blocks`
    BasicBlocks at `widths` (default 16/32/64) with strides 1/2/2, 1x1 conv + BN shortcuts where the
    shape changes, global average pooling, ``classifier`` Linear. 174,970 parameters with the
    defaults and 10 classes (14 weight layers: a ResNet-14 in the CIFAR-style 6n+2 family).

    No pretrained weights ship with torchslim; `pretrained` is accepted and ignored (random init).
    """
    name = "fmnist-resnet"
    return FashionResNet(
        check_positive_int(num_classes, "num_classes", name),
        check_int_list(widths, "widths", name, length=3),
        check_positive_int(blocks, "blocks", name),
    )
