"""Built-in models for demos, tests and benchmarks: LeNet-300-100, LeNet-5, a Fashion-MNIST CNN and
ResNet, EfficientNet-Lite0 (ImageNet) and MiniLM-L6 (sentence encoder / text classifier).

``build_model(name)`` builds one from the `MODELS` table and records a JSON spec on it, so an
artifact can rebuild the architecture with ``build_from_spec``. Optional packages (transformers,
the EfficientNet and MiniLM weight packages) are imported only when a model needs them.
"""

from torchslim.models.efficientnet import SAMPLE_PHOTO_LABELS, efficientnet_preprocess, sample_photos
from torchslim.models.resnet import BasicBlock, FashionResNet
from torchslim.models.small import FashionCNN, LeNet5, LeNet300100
from torchslim.models.text import SentenceEncoder, TextClassifier, mean_pool
from torchslim.models.zoo import (
    MODELS,
    ModelInfo,
    build_from_spec,
    build_model,
    example_input,
    get_model_spec,
    model_info,
    set_model_spec,
)

__all__ = [
    "BasicBlock",
    "FashionCNN",
    "FashionResNet",
    "LeNet300100",
    "LeNet5",
    "MODELS",
    "ModelInfo",
    "SAMPLE_PHOTO_LABELS",
    "SentenceEncoder",
    "TextClassifier",
    "build_from_spec",
    "build_model",
    "efficientnet_preprocess",
    "example_input",
    "get_model_spec",
    "mean_pool",
    "model_info",
    "sample_photos",
    "set_model_spec",
]
