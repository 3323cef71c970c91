"""`Context`: everything a step needs besides the model and its config, passed explicitly."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True)
class DataSplits:
    """Disjoint data splits, each an iterable of ``(inputs, labels)`` batches (e.g. a DataLoader).

    `train` feeds fine-tuning, `calibration` feeds quantization observers and importance scores,
    `validation` is for choices made during compression (search, early stopping), `test` is only
    for the final report. Any may be None when a step does not need it.
    """

    train: Iterable[Any] | None = None
    calibration: Iterable[Any] | None = None
    validation: Iterable[Any] | None = None
    test: Iterable[Any] | None = None
    name: str = "custom"
    num_classes: int | None = None
    labelled: bool | None = None
    """False: judge by agreement with the original model even where batches carry labels (the model has
    no head for them); None: as the data says (``torchslim.data.is_labelled``)."""


@dataclasses.dataclass(frozen=True)
class Context:
    """Data, device, seed, run directory, threads and verbosity for one compression run."""

    data: DataSplits | None = None
    device: str = "cpu"
    seed: int = 0
    run_dir: Path | None = None
    threads: int | None = None
    quiet: bool = False
    example_input: Any = None
    teacher: Any = None
    """The original, uncompressed model (read-only): the default teacher of distillation steps."""

    def replace(self, **changes: Any) -> Context:
        return dataclasses.replace(self, **changes)

    def require_data(self, split: str, *, technique: str) -> Iterable[Any]:
        from torchslim.core.errors import DataError

        loader: Iterable[Any] | None = getattr(self.data, split, None) if self.data is not None else None
        if loader is None:
            raise DataError(f"Technique {technique!r} needs {split} data, but none was given.")
        return loader
