"""Shared split logic: argument checks and deterministic, disjoint, seeded index partitions.

Every built-in dataset is cut into four disjoint splits: ``train`` (fine-tuning),
``calibration`` (quantization observers, importance scores), ``validation`` (choices made during
compression) and ``test`` (the final report only). The cut is a pure function of the dataset
size, the split sizes and the seed, computed with NumPy's PCG64 generator, so it is identical on
every machine and every run.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from torchslim.core.errors import ConfigError, DataError, UnknownNameError, did_you_mean

SPLITS: tuple[str, ...] = ("train", "calibration", "validation", "test")

#: Seed of the held-out test cut for datasets without an official test set (digits, tweets).
#: It is fixed on purpose: `seed` reshuffles train/calibration/validation, but the test split
#: stays the same for every seed, so results under different seeds are scored on the same data
#: and a model trained under one seed never saw the test rows of another.
TEST_SEED = 0x7E57

#: ``take(size) -> n``: how many of a split's `size` rows (in the split's order) to keep.
Take = Callable[[int], int]


def check_split(split: str) -> str:
    """Return `split` if it is one of SPLITS, else raise UnknownNameError (a ConfigError)."""
    if split not in SPLITS:
        raise UnknownNameError(
            f"Unknown split {split!r}; choose one of {list(SPLITS)}." + did_you_mean(str(split), SPLITS)
        )
    return split


def check_seed(seed: int) -> int:
    """Return `seed` if it is a non-negative int, else raise ConfigError naming `seed`."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"`seed` must be a non-negative integer, got {seed!r}.")
    return int(seed)


def check_count(value: int | None, *, name: str, allow_none: bool = True) -> int | None:
    """Return `value` if it is a positive int (or None when `allow_none`); else ConfigError naming `name`."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        what = "a positive integer or None" if allow_none else "a positive integer"
        raise ConfigError(f"`{name}` must be {what}, got {value!r}.")
    return int(value)


def strict_take(subset: int | None, *, split: str) -> Take:
    """`take` for a loader's `subset`: all rows when None, else exactly `subset` rows.

    The returned function raises ConfigError naming `subset` when the split has fewer rows.
    """
    subset = check_count(subset, name="subset")

    def take(size: int) -> int:
        if subset is None:
            return size
        if subset > size:
            raise ConfigError(f"`subset`={subset} is larger than the {split!r} split, which has {size} samples.")
        return subset

    return take


def capped_take(cap: int | None) -> Take:
    """`take` that keeps ``min(size, cap)`` rows (all of them when `cap` is None)."""

    def take(size: int) -> int:
        return size if cap is None else min(size, cap)

    return take


def split_indices(
    n: int,
    *,
    n_validation: int,
    n_calibration: int,
    n_test: int = 0,
    seed: int,
    groups: np.ndarray | None = None,
    dataset: str = "dataset",
) -> dict[str, np.ndarray]:
    """Partition ``range(n)`` into disjoint index arrays keyed by split name.

    With ``n_test > 0`` the test split is cut first with the fixed TEST_SEED (it does not depend
    on `seed`); the remaining rows are permuted with `seed` and cut into validation
    (`n_validation` rows), calibration (`n_calibration`) and train (the rest). Without `n_test`
    the result has no "test" key (the dataset ships its own test set).

    `groups` (one hashable key per row, e.g. the text of a tweet) keeps rows with equal keys in
    the same split, so duplicated samples cannot leak from train into test. Whole groups are then
    assigned, and a split receives at least its requested size (overshooting by less than the
    size of one group). Without `groups` the sizes are exact.

    Within each split the rows are in a seeded random order, so ``indices[:k]`` is a random
    sample of the split.
    """
    if groups is None:
        group_of = np.arange(n)
        counts = np.ones(n, dtype=np.int64)
    else:
        if len(groups) != n:
            raise DataError(f"{dataset}: {len(groups)} group keys for {n} rows.")
        _, group_of, counts = np.unique(np.asarray(groups), return_inverse=True, return_counts=True)
        group_of = group_of.reshape(-1)
    if n <= n_test + n_validation + n_calibration:
        raise DataError(
            f"{dataset} has {n} samples, too few for test={n_test}, validation={n_validation} "
            f"and calibration={n_calibration} plus a non-empty train split."
        )
    remaining = np.arange(len(counts))
    out: dict[str, np.ndarray] = {}
    if n_test > 0:
        rng = np.random.default_rng(TEST_SEED)
        test_groups, remaining = _carve(remaining[rng.permutation(len(remaining))], counts, n_test)
        out["test"] = _rows(test_groups, group_of, rng)
        remaining = np.sort(remaining)
    rng = np.random.default_rng(seed)
    order = remaining[rng.permutation(len(remaining))]
    validation, order = _carve(order, counts, n_validation)
    calibration, train = _carve(order, counts, n_calibration)
    out["validation"] = _rows(validation, group_of, rng)
    out["calibration"] = _rows(calibration, group_of, rng)
    out["train"] = _rows(train, group_of, rng)
    if len(out["train"]) == 0:
        raise DataError(f"{dataset}: the train split came out empty; the other splits took every sample.")
    return out


def _carve(order: np.ndarray, counts: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    """Take groups from the front of `order` until they hold at least `target` rows."""
    before = np.cumsum(counts[order]) - counts[order]  # rows taken before each group
    k = int(np.searchsorted(before, target, side="left"))
    return order[:k], order[k:]


def _rows(selected_groups: np.ndarray, group_of: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    rows = np.flatnonzero(np.isin(group_of, selected_groups))
    return rows[rng.permutation(len(rows))]
