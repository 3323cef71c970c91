"""Shared fixtures for the built-in model tests. Everything loads offline."""

from __future__ import annotations

import os

import pytest

# Hugging Face libraries read this when first imported; the tests must never reach the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _hf_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def effnet():
    """Pretrained EfficientNet-Lite0 (1000 classes), built once per session; do not modify."""
    from torchslim.models import build_model

    return build_model("efficientnet-lite0")


@pytest.fixture(scope="session")
def minilm():
    """Pretrained MiniLM-L6 SentenceEncoder, built once per session; do not modify."""
    from torchslim.models import build_model

    return build_model("minilm-l6")
