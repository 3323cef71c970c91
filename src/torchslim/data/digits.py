"""scikit-learn's 8x8 handwritten digits (1,797 images, bundled in the scikit-learn wheel).

Images are scaled to ``x / 16`` (pixel values are 0..16) and then normalised with the mean and
standard deviation of that scaled value over all 1,797 images: MEAN = 0.3053, STD = 0.3760
(computed once with NumPy; stated here as constants so every split uses the same transform).

Splits: a fixed ``test`` cut of 20% (359 images; the same for every seed), then the rest is
permuted with `seed` into ``validation`` 10% (179), ``calibration`` 10% (179) and ``train``
(the remaining 1,080).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch.utils.data import TensorDataset

from torchslim.data._splits import Take, check_seed, check_split, split_indices, strict_take

NAME = "digits"
MEAN = 0.3053
STD = 0.3760
CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
TEST_PERCENT = 20
VALIDATION_PERCENT = 10
CALIBRATION_PERCENT = 10


def digits(*, split: str = "train", subset: int | None = None, seed: int = 0) -> TensorDataset:
    """scikit-learn digits as a TensorDataset of (image, label).

    Images are float32 ``[N, 1, 8, 8]`` normalised as ``(x / 16 - 0.3053) / 0.3760``; labels are
    int64 in ``0..9``. `split` is one of "train" (1,080), "calibration" (179), "validation" (179)
    or "test" (359, fixed for every seed); all four are disjoint. `subset` keeps the first
    `subset` samples of the split, in its deterministic order.
    """
    return build(root=None, split=split, seed=seed, take=strict_take(subset, split=split))


def build(*, root: None = None, split: str, seed: int, take: Take) -> TensorDataset:
    """Load one split, keeping its first ``take(split_size)`` samples (used by `load_splits`)."""
    check_split(split)
    seed = check_seed(seed)
    images, labels = _arrays()
    n = len(labels)
    index = split_indices(
        n,
        n_test=n * TEST_PERCENT // 100,
        n_validation=n * VALIDATION_PERCENT // 100,
        n_calibration=n * CALIBRATION_PERCENT // 100,
        seed=seed,
        dataset=NAME,
    )[split]
    index = index[: take(len(index))]
    x = torch.from_numpy(images[index]).unsqueeze(1).to(torch.float32)
    x.div_(16.0).sub_(MEAN).div_(STD)
    return TensorDataset(x, torch.from_numpy(labels[index].astype(np.int64)))


@functools.lru_cache(maxsize=1)
def _arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # imported lazily: scikit-learn takes ~1 s to import

    bunch = load_digits()
    images = np.ascontiguousarray(bunch.images, dtype=np.float32)  # values 0..16, exact in float32
    labels = np.ascontiguousarray(bunch.target, dtype=np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels
