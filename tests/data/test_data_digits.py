"""scikit-learn digits: shapes, the stated normalisation constants, split sizes, partition, seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from torchslim.core.errors import ConfigError, UnknownNameError
from torchslim.data import digits

SPLITS = ("train", "calibration", "validation", "test")


@pytest.fixture(scope="module")
def seed0() -> dict[str, torch.utils.data.TensorDataset]:
    return {split: digits(split=split) for split in SPLITS}


def _rows(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    raw = torch.round((x[:, 0] * 0.3760 + 0.3053) * 16).to(torch.int64).reshape(len(x), -1)
    table = np.ascontiguousarray(torch.cat([raw, y.reshape(-1, 1)], dim=1).numpy())
    return np.sort(table.view(np.dtype((np.void, table.shape[1] * table.itemsize))).ravel())


def test_shapes_dtypes_and_sizes(seed0):
    assert {k: len(v) for k, v in seed0.items()} == {"train": 1080, "calibration": 179, "validation": 179, "test": 359}
    for ds in seed0.values():
        x, y = ds.tensors
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 8, 8)
        assert y.dtype == torch.int64 and 0 <= int(y.min()) and int(y.max()) <= 9


def test_normalisation_constants_match_the_whole_set(seed0):
    x = torch.cat([ds.tensors[0] for ds in seed0.values()]).double()
    assert len(x) == 1797
    assert abs(x.mean().item()) < 1e-3 and abs(x.std(unbiased=False).item() - 1) < 1e-3
    # each image equals the sklearn image it came from under the stated transform
    ref = load_digits()
    source_of = {tuple(img.ravel()): img for img in ref.images}
    first = seed0["train"].tensors[0][:5, 0].double().numpy()
    for x_img in first:
        source = source_of[tuple(np.round((x_img * 0.3760 + 0.3053) * 16).ravel())]
        np.testing.assert_allclose(x_img, (source / 16 - 0.3053) / 0.3760, atol=1e-5)


def test_splits_partition_the_dataset(seed0):
    ref = load_digits()
    together = np.sort(np.concatenate([_rows(*ds.tensors) for ds in seed0.values()]))
    source = _rows(
        torch.from_numpy((ref.images / 16 - 0.3053) / 0.3760).float().unsqueeze(1), torch.from_numpy(ref.target)
    )
    assert np.array_equal(together, source)


def test_seeds(seed0):
    assert torch.equal(digits(split="train").tensors[0], seed0["train"].tensors[0])
    other = {split: digits(split=split, seed=1) for split in SPLITS}
    assert not torch.equal(other["validation"].tensors[0], seed0["validation"].tensors[0])
    assert torch.equal(other["test"].tensors[0], seed0["test"].tensors[0]), "test is fixed across seeds"
    assert {k: len(v) for k, v in other.items()} == {k: len(v) for k, v in seed0.items()}


def test_subset_and_errors(seed0):
    head = digits(split="test", subset=7)
    assert torch.equal(head.tensors[0], seed0["test"].tensors[0][:7])
    with pytest.raises(ConfigError, match="`subset`=360"):
        digits(split="test", subset=360)
    with pytest.raises(UnknownNameError, match="Did you mean 'train'"):
        digits(split="trian")
    with pytest.raises(ConfigError, match="`seed`"):
        digits(seed=-1)
