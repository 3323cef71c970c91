"""The user's data as torchslim `DataSplits`: seeded disjoint splits, preprocessing, pseudo-labels.

`load_custom(path, ...)` reads a path with the matching reader of data/adapters.py (a directory
of images, ``.npz`` / ``.csv`` tables, a ``.txt`` file of sentences) and `split_samples` cuts any
`SampleSet` (also `from_iterable(...)`) into train / calibration / validation / test. The cut is a
seeded permutation: the same seed and size give the same disjoint splits on every machine.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from torchslim.core.batches import call_model, logits_of, model_device, to_device
from torchslim.core.context import DataSplits
from torchslim.core.errors import ConfigError, DataError, did_you_mean
from torchslim.data._splits import SPLITS, check_count, check_seed
from torchslim.data.adapters import IMAGE_SUFFIXES, Preprocess, SampleSet, image_folder, table, text_lines
from torchslim.data.hf_datasets import PREFIX as HF_PREFIX
from torchslim.data.hf_datasets import hf_dataset, is_saved_dataset

#: Default split fractions: labelled data trains, unlabelled data calibrates and is compared.
LABELLED_FRACTIONS: Mapping[str, float] = {"train": 0.7, "calibration": 0.1, "validation": 0.1, "test": 0.1}
UNLABELLED_FRACTIONS: Mapping[str, float] = {"calibration": 0.5, "test": 0.5}
#: Unlabelled data for a recipe that trains: a train split (pseudo-labelled by the original model).
UNLABELLED_TRAIN_FRACTIONS: Mapping[str, float] = {"train": 0.4, "calibration": 0.2, "test": 0.4}

#: The attribute a model may carry with its own ``preprocess(raw_sample)`` callable.
PREPROCESS_ATTR = "torchslim_preprocess"


@dataclasses.dataclass(frozen=True)
class ImagePreprocess:
    """uint8 H x W x 3 RGB -> float32 ``[channels, size, size]``: ``(pixel - mean) / std``.

    Resized with ``torch.nn.functional.interpolate`` (bilinear, antialiased, aspect ratio not
    kept) when `size` is set; ``channels=1`` averages R, G and B. ``mean``/``std`` are in pixel
    units (0..255), one value for every channel.
    """

    size: int | None = None
    channels: int = 3
    mean: float = 0.0
    std: float = 255.0

    def __post_init__(self) -> None:
        if self.size is not None:
            check_count(self.size, name="ImagePreprocess.size", allow_none=False)
        if self.channels not in (1, 3):
            raise ConfigError(f"ImagePreprocess.channels must be 1 or 3, got {self.channels!r}.")
        if not (isinstance(self.std, (int, float)) and self.std > 0):
            raise ConfigError(f"ImagePreprocess.std must be a positive number, got {self.std!r}.")

    @classmethod
    def parse(cls, text: str) -> ImagePreprocess:
        """From ``"size=224,mean=127,std=128,channels=3"`` (any subset; the form of ``--preprocess``)."""
        fields = {f.name: f.type for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in str(text).split(","))):
            key, sep, raw = part.partition("=")
            key = key.strip()
            if not sep or key not in fields:
                raise ConfigError(
                    f"--preprocess: expected key=value with keys {list(fields)}, got {part!r}."
                    + did_you_mean(key, list(fields))
                )
            try:
                values[key] = int(raw) if key in ("size", "channels") else float(raw)
            except ValueError:
                raise ConfigError(f"--preprocess: {key}={raw!r} is not a number.") from None
        return cls(**values)

    def __call__(self, image: Any) -> torch.Tensor:
        array = np.asarray(image)
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3:
            raise DataError(f"ImagePreprocess: expected a uint8 H x W x 3 image, got {array.dtype} {array.shape}.")
        x = torch.tensor(array).permute(2, 0, 1).float().unsqueeze(0)
        if self.channels == 1:
            x = x.mean(dim=1, keepdim=True)
        if self.size is not None:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        return ((x - self.mean) / self.std).squeeze(0)


#: Preprocessing of the built-in image models, by model name (models built by `build_model` carry
#: their name in ``torchslim_spec``). EfficientNet-Lite0: ``(pixel - 127) / 128`` at 224 x 224, as
#: models/efficientnet.py's ``efficientnet_preprocess``; the 28 x 28 Fashion-MNIST models: grey,
#: normalised as data/fashion_mnist.py (mean 0.2860, std 0.3530 of pixel / 255).
_FMNIST = ImagePreprocess(size=28, channels=1, mean=0.2860 * 255.0, std=0.3530 * 255.0)
BUILTIN_PREPROCESS: Mapping[str, Preprocess] = {
    "efficientnet-lite0": ImagePreprocess(size=224, mean=127.0, std=128.0),
    "lenet5": _FMNIST,
    "lenet-300-100": _FMNIST,
    "fmnist-cnn": _FMNIST,
    "fmnist-resnet": _FMNIST,
}


def preprocess_of(model: nn.Module | None) -> Preprocess | None:
    """The model's own preprocessing: its ``torchslim_preprocess`` attribute, else the built-in
    table by the name in its ``torchslim_spec``, else None (text models tokenize themselves)."""
    if model is None:
        return None
    own = getattr(model, PREPROCESS_ATTR, None)
    if callable(own):
        return own  # type: ignore[no-any-return]  # an attribute set by the user: any callable
    spec = getattr(model, "torchslim_spec", None)
    name = spec.get("name") if isinstance(spec, Mapping) else None
    return BUILTIN_PREPROCESS.get(name) if isinstance(name, str) else None


def split_counts(n: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """Sample counts per split for `n` samples: largest remainders, every positive fraction >= 1."""
    unknown = [k for k in fractions if k not in SPLITS]
    if unknown:
        raise ConfigError(
            f"`fractions`: unknown split {unknown[0]!r}; splits: {list(SPLITS)}." + did_you_mean(unknown[0], SPLITS)
        )
    if any(not isinstance(v, (int, float)) or v < 0 for v in fractions.values()) or sum(fractions.values()) <= 0:
        raise ConfigError(f"`fractions` must be non-negative numbers with a positive sum, got {dict(fractions)}.")
    total = float(sum(fractions.values()))
    wanted = [s for s in SPLITS if fractions.get(s, 0) > 0]
    if n < len(wanted):
        raise DataError(f"{n} samples are too few for the {len(wanted)} splits {wanted}: each needs one.")
    exact = {s: n * fractions[s] / total for s in wanted}
    counts = {s: max(1, math.floor(v)) for s, v in exact.items()}
    order = sorted(wanted, key=lambda s: exact[s] - math.floor(exact[s]), reverse=True)
    i = 0
    while sum(counts.values()) != n:
        s = order[i % len(order)]
        if sum(counts.values()) < n:
            counts[s] += 1
        elif counts[s] > 1:
            counts[s] -= 1
        i += 1
    return counts


def _collate(batch: Sequence[tuple[Any, int]]) -> tuple[Any, torch.Tensor]:
    inputs = [x for x, _ in batch]
    labels = torch.tensor([y for _, y in batch], dtype=torch.int64)
    if all(isinstance(x, str) for x in inputs):
        return inputs, labels
    if all(isinstance(x, torch.Tensor) for x in inputs):
        shapes = {tuple(x.shape) for x in inputs}
        if len(shapes) > 1:
            raise DataError(
                f"Samples of one batch have different shapes {sorted(shapes)[:3]}; give `preprocess=` (e.g. "
                "ImagePreprocess(size=224)) or a model that carries its preprocessing."
            )
        return torch.stack(inputs), labels
    if all(isinstance(x, np.ndarray) for x in inputs):
        return _collate([(torch.as_tensor(x), y) for x, y in batch])
    raise DataError(
        f"Cannot batch samples of type {type(inputs[0]).__name__}; give `preprocess=` to turn them into tensors."
    )


def split_samples(
    samples: SampleSet,
    *,
    fractions: Mapping[str, float] | None = None,
    seed: int = 0,
    batch_size: int = 32,
    name: str | None = None,
    train_samples: int | None = None,
    eval_samples: int | None = None,
    num_workers: int = 0,
    trains: bool = False,
) -> DataSplits:
    """Cut `samples` into disjoint, seeded splits of DataLoaders (train shuffled by `seed`).

    `fractions` maps split names to shares (defaults: `LABELLED_FRACTIONS`, or for unlabelled data
    `UNLABELLED_FRACTIONS`, `UNLABELLED_TRAIN_FRACTIONS` when the data `trains` a recipe); a split
    left out is None. `train_samples` caps
    the train split and `eval_samples` the other three (a seeded random subset of the split; a cap
    above a split's size keeps it whole). Each loader's ``len(loader.dataset)`` is the number of
    samples it holds (see `split_sizes`).
    """
    seed = check_seed(seed)
    checked = check_count(batch_size, name="batch_size", allow_none=False)
    assert checked is not None
    caps = {
        "train": check_count(train_samples, name="train_samples"),
        **dict.fromkeys(("calibration", "validation", "test"), check_count(eval_samples, name="eval_samples")),
    }
    if fractions is None:
        if samples.labelled:
            fractions = LABELLED_FRACTIONS
        else:
            fractions = UNLABELLED_TRAIN_FRACTIONS if trains else UNLABELLED_FRACTIONS
    counts = split_counts(len(samples), fractions)
    order = np.random.default_rng(seed).permutation(len(samples))
    loaders: dict[str, DataLoader[Any] | None] = dict.fromkeys(SPLITS)
    start = 0
    for split in SPLITS:
        if split not in counts:
            continue
        chosen = order[start : start + counts[split]]
        start += counts[split]
        rows = sorted(int(i) for i in chosen[: caps[split]])
        shuffle = split == "train"
        loaders[split] = DataLoader(
            Subset(samples, rows),
            batch_size=checked,
            shuffle=shuffle,
            generator=torch.Generator().manual_seed(seed) if shuffle else None,
            collate_fn=_collate,
            num_workers=num_workers,
        )
    return DataSplits(
        **loaders,
        name=name or Path(samples.source).name or samples.kind,
        num_classes=samples.num_classes,
        labelled=None,  # decided from the samples by is_labelled
    )


def split_sizes(splits: DataSplits) -> dict[str, int]:
    """How many samples each present split holds (loaders whose dataset has a length)."""
    out: dict[str, int] = {}
    for split in SPLITS:
        loader = getattr(splits, split)
        dataset = getattr(loader, "dataset", None)
        if dataset is not None and hasattr(dataset, "__len__"):
            out[split] = len(dataset)
    return out


def is_labelled(splits: DataSplits) -> bool:
    """False for splits read from unlabelled data (labels are all `UNLABELLED`), or marked
    ``labelled=False`` (a model without a head for the labels): use agreement."""
    if splits.labelled is not None:
        return splits.labelled
    for split in SPLITS:
        dataset = getattr(getattr(splits, split), "dataset", None)
        base = dataset.dataset if isinstance(dataset, Subset) else dataset
        if isinstance(base, SampleSet):
            return base.labelled
    return True


def _detect(path: Path, preprocess: Preprocess | None) -> SampleSet:
    if str(path).startswith(HF_PREFIX) or is_saved_dataset(path):
        return hf_dataset(path if is_saved_dataset(path) else str(path), preprocess=preprocess)
    if path.is_dir():
        return image_folder(path, preprocess=preprocess)
    suffix = path.suffix.lower()
    if suffix in (".npz", ".csv", ".tsv"):
        return table(path)
    if suffix == ".txt":
        return text_lines(path)
    if suffix in IMAGE_SUFFIXES:
        raise DataError(f"{str(path)!r} is one image; give the folder that holds the images.")
    raise DataError(
        f"Cannot tell what {str(path)!r} holds: expected a folder of images, a saved Hugging Face dataset, "
        ".npz, .csv or .txt."
    )


def load_custom(
    path: str | os.PathLike[str],
    *,
    model: nn.Module | None = None,
    preprocess: Preprocess | None = None,
    fractions: Mapping[str, float] | None = None,
    seed: int = 0,
    batch_size: int = 32,
    **options: Any,
) -> DataSplits:
    """Read `path` (see `_detect`) and split it; images use `preprocess`, else the model's own.
    `options` go to `split_samples` (`train_samples`, `eval_samples`, `num_workers`)."""
    if preprocess is not None and not callable(preprocess):
        raise ConfigError(f"`preprocess` must be a callable, got {type(preprocess).__name__}.")
    samples = _detect(Path(path).expanduser(), preprocess or preprocess_of(model))
    return split_samples(samples, fractions=fractions, seed=seed, batch_size=batch_size, **options)


class _Relabelled(Dataset[tuple[Any, int]]):
    def __init__(self, base: Dataset[Any], labels: list[int]) -> None:
        self.base, self.labels = base, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.base[index][0], self.labels[index]


@torch.no_grad()
def with_pseudo_labels(splits: DataSplits, model: nn.Module, *, split_names: Iterable[str] = ("train",)) -> DataSplits:
    """`splits` with the named splits relabelled by `model`'s argmax (e.g. unlabelled images that
    train a pruned student toward the original model); the other splits are unchanged."""
    was_training = model.training
    model.eval()
    changes: dict[str, Any] = {}
    classes = 0
    try:
        for split in split_names:
            loader = getattr(splits, split)
            if loader is None:
                raise DataError(f"with_pseudo_labels: there is no {split} split to relabel.")
            labels: list[int] = []
            for inputs, _ in DataLoader(loader.dataset, batch_size=loader.batch_size, collate_fn=loader.collate_fn):
                out = logits_of(call_model(model, to_device(inputs, model_device(model))))
                labels.extend(int(v) for v in out.argmax(dim=-1).cpu())
                classes = int(out.shape[-1])
            changes[split] = DataLoader(
                _Relabelled(loader.dataset, labels),
                batch_size=loader.batch_size,
                shuffle=split == "train",
                generator=loader.generator,
                collate_fn=loader.collate_fn,
            )
    finally:
        model.train(was_training)
    return dataclasses.replace(splits, **changes, num_classes=splits.num_classes or classes)
