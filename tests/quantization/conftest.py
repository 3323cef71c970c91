"""Fixtures for the quantization tests; the toy models live in quant_toys.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

_NAME = "quant_toys"


def _load_toys():
    """Import quant_toys.py under a fixed name so test modules can ``from quant_toys import ...``."""
    if _NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(_NAME, Path(__file__).resolve().parent / "quant_toys.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[_NAME] = module
        spec.loader.exec_module(module)
    return sys.modules[_NAME]


_toys = _load_toys()
ToyTransformer, context_for, image_batches = _toys.ToyTransformer, _toys.context_for, _toys.image_batches
make_cnn, token_batches = _toys.make_cnn, _toys.token_batches


@pytest.fixture
def cnn():
    return make_cnn()


@pytest.fixture
def images():
    return image_batches()


@pytest.fixture
def cnn_context(images):
    return context_for(images, example=images[0][0][:1])


@pytest.fixture
def transformer():
    torch.manual_seed(0)
    return ToyTransformer().eval()


@pytest.fixture
def tokens():
    return token_batches()
