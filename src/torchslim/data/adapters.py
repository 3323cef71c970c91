"""Readers for the user's own data: image folders, numpy / CSV tables, text files, Python iterables.

Each reader returns a `SampleSet`: a map-style dataset of ``(input, label)`` pairs plus what it
knows about itself (class names, whether it has labels, where it came from). `split_samples`
(data/custom.py) cuts one into torchslim's four disjoint splits.

Unlabelled data (a folder of images without class subfolders, a text file of plain sentences, a
table without a label column) carries the label `UNLABELLED` (-1) for every sample and
``labelled=False``: it serves calibration and agreement with the original model, never accuracy.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from torchslim.core.errors import DataError, DataNotFoundError

#: The label of every sample of an unlabelled set.
UNLABELLED = -1

#: File name endings read as images (decoded with Pillow).
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")

#: ``preprocess(raw) -> model input`` for one sample (an image arrives as uint8 H x W x C numpy).
Preprocess = Callable[[Any], Any]


class SampleSet(Dataset[tuple[Any, int]]):
    """``(input, label)`` pairs read lazily by `load(index)`, then passed through `preprocess`.

    `classes` names the labels (empty when unlabelled); `kind` is "image", "table", "text" or
    "iterable"; `source` says where the samples came from (a path or "python").
    """

    def __init__(
        self,
        *,
        size: int,
        load: Callable[[int], Any],
        labels: Sequence[int] | None,
        classes: Sequence[str] = (),
        kind: str,
        source: str,
        preprocess: Preprocess | None = None,
    ) -> None:
        if size < 1:
            raise DataError(f"{source}: no samples found.")
        if labels is not None and len(labels) != size:
            raise DataError(f"{source}: {size} samples but {len(labels)} labels.")
        self.size = size
        self.load = load
        self.labels: list[int] = [int(v) for v in labels] if labels is not None else [UNLABELLED] * size
        self.labelled = labels is not None
        self.classes = tuple(classes)
        self.kind = kind
        self.source = source
        self.preprocess = preprocess

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[Any, int]:
        raw = self.load(index)
        return (self.preprocess(raw) if self.preprocess is not None else raw), self.labels[index]

    @property
    def num_classes(self) -> int | None:
        if not self.labelled:
            return None
        return len(self.classes) if self.classes else max(self.labels) + 1


def _existing(path: str | os.PathLike[str]) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise DataNotFoundError(f"Data path {str(path)!r} does not exist.")
    return p


def decode_image(path: Path) -> np.ndarray:
    """One image file as uint8 H x W x 3 RGB (Pillow); DataError naming the file if it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"Cannot decode image {str(path)!r}: {exc}.") from None


def image_folder(path: str | os.PathLike[str], *, preprocess: Preprocess | None = None) -> SampleSet:
    """Images under directory `path`.

    With class subfolders (``path/cat/1.png``, ``path/dog/2.jpg``) the subfolder names, sorted,
    are the classes and give the labels; images directly in `path` (and no subfolders with images)
    make an unlabelled set, for calibration and agreement. Files are listed in sorted order, so
    the same folder gives the same sample order on every machine. Each image is decoded with
    Pillow to uint8 H x W x 3 RGB and passed to `preprocess` (see `ImagePreprocess`).
    """
    root = _existing(path)
    if not root.is_dir():
        raise DataError(f"image_folder: {str(root)!r} is not a directory.")

    def images_in(folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)

    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and images_in(d))
    loose = images_in(root)
    if classes and loose:
        raise DataError(
            f"image_folder {str(root)!r} holds both class subfolders {classes[:5]} and {len(loose)} loose "
            "images; put every image in a class folder (labelled) or none (unlabelled)."
        )
    if classes:
        files = [(f, k) for k, name in enumerate(classes) for f in images_in(root / name)]
    else:
        files = [(f, UNLABELLED) for f in loose]
    if not files:
        raise DataError(f"image_folder {str(root)!r} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
    return SampleSet(
        size=len(files),
        load=lambda i: decode_image(files[i][0]),
        labels=[k for _, k in files] if classes else None,
        classes=classes,
        kind="image",
        source=str(root),
        preprocess=preprocess,
    )


def _npz_arrays(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    with np.load(path, allow_pickle=False) as data:
        keys = list(data.keys())
        xkey = next((k for k in ("x", "inputs", "features", "X", "data") if k in keys), None)
        ykey = next((k for k in ("y", "labels", "targets", "Y", "label") if k in keys), None)
        if xkey is None:
            raise DataError(f"{str(path)!r}: no input array; name it 'x' (or inputs/features/data); found {keys}.")
        return np.asarray(data[xkey]), None if ykey is None else np.asarray(data[ykey])


def _csv_arrays(path: Path, label_column: str) -> tuple[np.ndarray, np.ndarray | None]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.reader(handle) if r]
    if not rows:
        raise DataError(f"{str(path)!r} is empty.")
    header, body = rows[0], rows[1:]
    try:
        [float(v) for v in header]
        header, body = [f"c{i}" for i in range(len(rows[0]))], rows  # no header row
    except ValueError:
        pass
    try:
        table = np.asarray(body, dtype=np.float64)
    except ValueError as exc:
        raise DataError(f"{str(path)!r}: every value below the header must be a number ({exc}).") from None
    if table.ndim != 2 or table.shape[0] == 0:
        raise DataError(f"{str(path)!r}: expected rows of numbers below the header.")
    if label_column in header:
        k = header.index(label_column)
        return np.delete(table, k, axis=1), table[:, k]
    return table, None


def table(path: str | os.PathLike[str], *, label_column: str = "label") -> SampleSet:
    """Rows of a numpy ``.npz`` (arrays ``x`` and, when labelled, ``y``) or a CSV file.

    A CSV file's header row names the columns; the column `label_column` (if present) holds
    integer labels, every other column is a float32 feature. Without it, or without ``y`` in an
    ``.npz``, the set is unlabelled. ``.npz`` files are read with ``allow_pickle=False``.
    """
    p = _existing(path)
    suffix = p.suffix.lower()
    if suffix == ".npz":
        x, y = _npz_arrays(p)
    elif suffix in (".csv", ".tsv", ".txt"):
        x, y = _csv_arrays(p, label_column)
    else:
        raise DataError(f"table: {str(p)!r} is neither .npz nor .csv.")
    if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
        raise DataError(f"{str(p)!r}: inputs must be finite numbers.")
    inputs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    labels = None
    if y is not None:
        if y.shape != (len(x),) or not np.all(y == np.round(y)) or (len(y) and y.min() < 0):
            raise DataError(f"{str(p)!r}: labels must be one non-negative integer per row.")
        labels = [int(v) for v in y]
    return SampleSet(size=len(inputs), load=lambda i: inputs[i], labels=labels, kind="table", source=str(p))


def text_lines(path: str | os.PathLike[str]) -> SampleSet:
    """Sentences from a UTF-8 text file, one per non-empty line, for language models.

    When every line reads ``<label>\\t<text>`` the labels are the distinct ``<label>`` values,
    sorted, and the set is labelled; otherwise every line is one unlabelled sentence. Batches
    are ``(list[str], labels)``: the model tokenizes.
    """
    p = _existing(path)
    lines = [line.rstrip("\r") for line in p.read_text(encoding="utf-8").split("\n") if line.strip()]
    if not lines:
        raise DataError(f"text_lines: {str(p)!r} has no non-empty line.")
    pairs = [line.split("\t", 1) for line in lines]
    if all(len(pair) == 2 and pair[0].strip() and pair[1].strip() for pair in pairs):
        classes = sorted({pair[0].strip() for pair in pairs})
        texts = [pair[1].strip() for pair in pairs]
        labels: list[int] | None = [classes.index(pair[0].strip()) for pair in pairs]
    else:
        classes, texts, labels = [], [line.strip() for line in lines], None
    return SampleSet(
        size=len(texts), load=lambda i: texts[i], labels=labels, classes=classes, kind="text", source=str(p)
    )


def from_iterable(
    items: Iterable[Any], *, labelled: bool | None = None, preprocess: Preprocess | None = None
) -> SampleSet:
    """Samples from any Python iterable: ``(input, label)`` pairs, or bare inputs (unlabelled).

    `labelled` says which; by default a 2-tuple whose second item is an int (or 0-d integer
    tensor) is a labelled pair. The iterable is read once, into memory.
    """
    samples = list(items)
    if not samples:
        raise DataError("from_iterable: the iterable yielded no samples.")

    def is_pair(s: Any) -> bool:
        if not isinstance(s, tuple) or len(s) != 2:
            return False
        label = s[1]
        if isinstance(label, torch.Tensor):
            return label.dim() == 0 and not label.is_floating_point()
        return isinstance(label, (int, np.integer)) and not isinstance(label, bool)

    if labelled is None:
        labelled = all(is_pair(s) for s in samples)
    if labelled:
        bad = next((i for i, s in enumerate(samples) if not is_pair(s)), None)
        if bad is not None:
            raise DataError(f"from_iterable: sample {bad} is not an (input, integer label) pair.")
        inputs = [s[0] for s in samples]
        labels: list[int] | None = [int(s[1]) for s in samples]
    else:
        inputs, labels = samples, None
    return SampleSet(
        size=len(inputs),
        load=lambda i: inputs[i],
        labels=labels,
        kind="iterable",
        source="python",
        preprocess=preprocess,
    )
