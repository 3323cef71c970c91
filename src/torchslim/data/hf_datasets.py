"""Hugging Face `datasets` as a torchslim sample set, read offline from disk.

Two ways in, both without network access:

* a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` (it holds
  ``state.json`` or ``dataset_dict.json``): :func:`datasets.load_from_disk`;
* ``hf:NAME`` or ``hf:NAME:CONFIG``: :func:`datasets.load_dataset` from the local cache only
  (``HF_DATASETS_OFFLINE=1`` is set for the call), so a dataset the user has downloaded before works
  on a machine without network and one that is not cached fails with a clear error.

A ``DatasetDict`` is read as one pool (its splits concatenated in name order); torchslim cuts its own
seeded, disjoint splits from it (data/custom.py), so the test split is never the calibration split.
Columns are found by name: the input is the first of ``image``, ``img``, ``pixel_values``, ``text``,
``sentence``, ``content``, ``tweet`` (or `input_column`); the label the first of ``label``,
``labels``, ``target``, ``fine_label`` (or `label_column`); without one the set is unlabelled.
Class names come from a ``ClassLabel`` feature. Images are decoded to uint8 H x W x 3 RGB and passed
to `preprocess` as for an image folder.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from torchslim.core.errors import DataError, DataNotFoundError
from torchslim.data.adapters import Preprocess, SampleSet

PREFIX = "hf:"
INPUT_COLUMNS = ("image", "img", "pixel_values", "text", "sentence", "content", "tweet")
LABEL_COLUMNS = ("label", "labels", "target", "fine_label")
SAVED_MARKERS = ("state.json", "dataset_dict.json")


def is_saved_dataset(path: Path) -> bool:
    """Whether folder `path` was written by ``save_to_disk``."""
    return path.is_dir() and any((path / marker).is_file() for marker in SAVED_MARKERS)


def _library() -> Any:
    try:
        import datasets
    except ImportError:
        raise DataError(
            "Reading a Hugging Face dataset needs the `datasets` package: pip install 'torchslim[models]'."
        ) from None
    return datasets


@contextmanager
def _offline() -> Any:
    before = os.environ.get("HF_DATASETS_OFFLINE")
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("HF_DATASETS_OFFLINE", None)
        else:
            os.environ["HF_DATASETS_OFFLINE"] = before


def _one_pool(datasets: Any, loaded: Any) -> Any:
    if isinstance(loaded, datasets.DatasetDict):
        if not loaded:
            raise DataError("The DatasetDict has no splits.")
        return datasets.concatenate_datasets([loaded[name] for name in sorted(loaded)])
    return loaded


def _load(source: str | os.PathLike[str]) -> tuple[Any, str]:
    datasets = _library()
    text = str(source)
    if text.startswith(PREFIX):
        name, _, config = text[len(PREFIX) :].partition(":")
        if not name:
            raise DataError(f"{text!r}: name the dataset after 'hf:' (hf:NAME or hf:NAME:CONFIG).")
        try:
            with _offline():
                loaded = datasets.load_dataset(name, config or None)
        except Exception as exc:  # the library raises many types (ConnectionError, FileNotFoundError, ValueError)
            raise DataNotFoundError(
                f"{text!r}: not in the local Hugging Face cache ({type(exc).__name__}: {str(exc)[:200]}). "
                "Download it once where there is network, or save it with save_to_disk and pass the folder."
            ) from None
        return _one_pool(datasets, loaded), text
    path = Path(source).expanduser()
    if not is_saved_dataset(path):
        raise DataError(
            f"{str(path)!r} is not a folder written by Dataset.save_to_disk (no {' or '.join(SAVED_MARKERS)})."
        )
    return _one_pool(datasets, datasets.load_from_disk(str(path))), str(path)


def _pick(columns: list[str], wanted: tuple[str, ...], given: str | None, what: str, source: str) -> str | None:
    if given is not None:
        if given not in columns:
            raise DataError(f"{source}: no {what} column {given!r}; the columns are {columns}.")
        return given
    return next((c for c in wanted if c in columns), None)


def _as_image(value: Any) -> Any:
    if hasattr(value, "convert"):  # a PIL image (the `Image` feature decodes to one)
        return np.array(value.convert("RGB"), dtype=np.uint8)
    array = np.asarray(value)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    return array.astype(np.uint8)


def hf_dataset(
    source: str | os.PathLike[str],
    *,
    preprocess: Preprocess | None = None,
    input_column: str | None = None,
    label_column: str | None = None,
) -> SampleSet:
    """A `SampleSet` of a saved dataset folder or ``hf:NAME[:CONFIG]`` (see the module docstring)."""
    dataset, where = _load(source)
    columns = list(dataset.column_names)
    inputs = _pick(columns, INPUT_COLUMNS, input_column, "input", where)
    if inputs is None:
        raise DataError(f"{where}: no input column among {columns}; name it (input_column=...).")
    labels_col = _pick(columns, LABEL_COLUMNS, label_column, "label", where)
    feature = dataset.features[inputs]
    is_text = getattr(feature, "dtype", None) == "string"
    kind = "text" if is_text else "image"
    labels = None if labels_col is None else [int(v) for v in dataset[labels_col]]
    classes = list(getattr(dataset.features[labels_col], "names", None) or []) if labels_col else []

    def load(index: int) -> Any:
        value = dataset[index][inputs]
        return value if is_text else _as_image(value)

    return SampleSet(
        size=len(dataset),
        load=load,
        labels=labels,
        classes=classes,
        kind=kind,
        source=where,
        preprocess=None if is_text else preprocess,
    )
