"""The shared split helper: exact sizes, disjointness, seeded order, fixed test cut, groups."""

from __future__ import annotations

import numpy as np
import pytest

from torchslim.core.errors import ConfigError, DataError, UnknownNameError
from torchslim.data._splits import capped_take, check_seed, check_split, split_indices, strict_take


def _cover(parts: dict[str, np.ndarray], n: int) -> None:
    joined = np.concatenate(list(parts.values()))
    assert len(joined) == n and np.array_equal(np.sort(joined), np.arange(n)), "splits must partition range(n)"


def test_sizes_are_exact_and_splits_partition_the_rows():
    parts = split_indices(100, n_validation=10, n_calibration=5, n_test=20, seed=3)
    assert {k: len(v) for k, v in parts.items()} == {"test": 20, "validation": 10, "calibration": 5, "train": 65}
    _cover(parts, 100)


def test_without_test_there_is_no_test_key():
    parts = split_indices(50, n_validation=5, n_calibration=5, seed=0)
    assert set(parts) == {"train", "validation", "calibration"}
    _cover(parts, 50)


def test_same_seed_same_cut_other_seed_other_cut_but_same_test():
    a = split_indices(200, n_validation=20, n_calibration=10, n_test=40, seed=0)
    b = split_indices(200, n_validation=20, n_calibration=10, n_test=40, seed=0)
    c = split_indices(200, n_validation=20, n_calibration=10, n_test=40, seed=1)
    for key in a:
        assert np.array_equal(a[key], b[key])
    assert np.array_equal(a["test"], c["test"])
    assert not np.array_equal(np.sort(a["validation"]), np.sort(c["validation"]))
    assert not np.array_equal(a["train"], np.sort(a["train"])), "rows inside a split are shuffled"


def test_groups_never_straddle_two_splits():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 60, size=300)  # ~5 rows per group
    parts = split_indices(300, n_validation=30, n_calibration=15, n_test=45, seed=2, groups=groups)
    _cover(parts, 300)
    seen: dict[int, str] = {}
    for split, rows in parts.items():
        for g in set(groups[rows].tolist()):
            assert seen.setdefault(g, split) == split
    # whole groups: each split reaches its target and overshoots by less than one group
    biggest = np.bincount(groups).max()
    for split, target in (("test", 45), ("validation", 30), ("calibration", 15)):
        assert target <= len(parts[split]) < target + biggest


def test_too_few_rows_is_a_data_error():
    with pytest.raises(DataError, match="too few"):
        split_indices(10, n_validation=5, n_calibration=3, n_test=2, seed=0)


def test_argument_checks():
    assert check_split("validation") == "validation"
    with pytest.raises(UnknownNameError, match="Did you mean 'validation'"):
        check_split("validaton")
    for bad in (-1, 1.5, True, "0"):
        with pytest.raises(ConfigError, match="`seed`"):
            check_seed(bad)
    assert strict_take(None, split="train")(7) == 7
    assert strict_take(3, split="train")(7) == 3
    with pytest.raises(ConfigError, match="`subset`=8 is larger than the 'train' split"):
        strict_take(8, split="train")(7)
    with pytest.raises(ConfigError, match="`subset`"):
        strict_take(0, split="train")
    assert capped_take(None)(7) == 7 and capped_take(3)(7) == 3 and capped_take(30)(7) == 7
