"""The zoo: every architecture the coverage suite runs, by name, with its family and builder.

A builder returns ``(model in eval mode, example input)`` with random weights (no downloads) and
BatchNorm statistics randomised (:func:`harness.randomize_norms`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from tests.zoo.classic_archs import CLASSIC_ARCHS
from tests.zoo.hand_archs import BUILTIN_ARCHS, HAND_ARCHS
from tests.zoo.harness import randomize_norms
from tests.zoo.hf_archs import HF_ARCHS
from torch import nn

FAST = ("fmnist-resnet", "concat-split", "patch-tokens", "tied-embedding", "bert", "gpt2", "vit", "resnet-hf")
"""The representative architectures run by the fast suite (``make test``); the rest are marked ``zoo`` + ``slow``."""


@dataclasses.dataclass(frozen=True)
class Arch:
    name: str
    family: str
    source: str
    builder: Callable[[], tuple[nn.Module, Any]]

    def build(self) -> tuple[nn.Module, Any]:
        torch.manual_seed(0)
        model, example = self.builder()
        return randomize_norms(model, example).eval(), example


def _archs() -> dict[str, Arch]:
    out: dict[str, Arch] = {}
    tables = (
        ("torchslim", BUILTIN_ARCHS),
        ("hand-made", HAND_ARCHS),
        ("classic", CLASSIC_ARCHS),
        ("transformers", HF_ARCHS),
    )
    for source, table in tables:
        for name, (family, builder) in table.items():
            out[name] = Arch(name, family, source, builder)
    return out


ARCHS: dict[str, Arch] = _archs()
