"""Recovery fine-tuning of the pruning techniques, through the one training loop.

A pruning config holds one nested ``train:`` section (:class:`~torchslim.train.TrainConfig`) for
the fine-tuning after one-shot pruning, after each iterative round, or the run AGP prunes during.
Its default trains nothing (``epochs=0``); the old flat keys (``finetune_epochs``, ``lr``, ...) are
moved into it by ``from_dict`` (:data:`RECOVERY_RENAMED`). Every run goes through
:func:`torchslim.train.train_in_context`, so device, seed, threads, verbosity and checkpoints come
from the :class:`~torchslim.core.Context`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from torchslim.core.context import Context
from torchslim.train import TrainConfig, TrainHook, result_info, train_in_context

RECOVERY_RENAMED: Mapping[str, str] = {
    "finetune_epochs": "train.epochs",
    "finetune_max_steps": "train.max_steps",
    "lr": "train.lr",
    "optimizer": "train.optimizer",
}
"""Flat keys of the pruning configs before the ``train:`` section, and where they went."""


def no_recovery() -> TrainConfig:
    """The default ``train:`` section of a pruning config: no fine-tuning (``epochs=0``)."""
    return TrainConfig(epochs=0)


def fill_train_defaults(
    data: Mapping[str, Any] | None, *, default: TrainConfig, renamed: Mapping[str, str]
) -> dict[str, Any]:
    """`data` with its ``train`` mapping completed from the technique's `default` section.

    ``TrainConfig.from_dict`` fills missing keys with TrainConfig's own defaults (``epochs=1``);
    a pruning step's default is not to train, so a partial ``train: {lr: 0.01}`` (or an old flat
    ``lr: 0.01``) must keep ``epochs=0`` as before. Keys given in the section, or by an old flat key
    that `renamed` moves into it, are left to the caller's value.
    """
    out = dict(data or {})
    section = out.get("train")
    if section is not None and not isinstance(section, Mapping):
        return out  # a TrainConfig instance, or a type error that from_dict reports
    moved = {new.partition(".")[2] for old, new in renamed.items() if old in out and new.startswith("train.")}
    given = dict(section or {})
    base = TrainConfig()
    for field in dataclasses.fields(TrainConfig):
        value = getattr(default, field.name)
        if field.name not in given and field.name not in moved and value != getattr(base, field.name):
            given[field.name] = value
    if section is not None or moved:
        out["train"] = given
    return out


def recover(
    model: nn.Module,
    config: TrainConfig,
    context: Context,
    *,
    technique: str,
    tag: str,
    hooks: Sequence[TrainHook] = (),
    own_run_dir: bool = False,
) -> dict[str, Any]:
    """Fine-tune `model` in place on ``context.data.train``; return the round's report entry.

    `own_run_dir` gives the run its own checkpoint directory ``<technique>/<tag>`` (each round of an
    iterative schedule starts from other weights, so rounds must not resume each other's checkpoint).
    """
    where = f"{technique}/{tag}" if own_run_dir else technique
    result = train_in_context(model, config=config, context=context, technique=where, hooks=hooks)
    return {"tag": tag, **result_info(result)}
