"""Fashion-MNIST: decoding, normalisation, split sizes, partition, seeds, file lookup and errors.

Uses the real files (Debian package dataset-fashion-mnist, set up by `make setup`) and small
synthetic IDX files written to tmp_path.
"""

from __future__ import annotations

import gzip
import importlib
import os
import struct

import numpy as np
import pytest
import torch

from torchslim.core.errors import ConfigError, DataError, DataNotFoundError, UnknownNameError
from torchslim.data import fashion_mnist

fm = importlib.import_module("torchslim.data.fashion_mnist")  # the module; the package attribute is the function


def _idx_bytes(array: np.ndarray) -> bytes:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def _write_pair(directory, part: str, images: np.ndarray, labels: np.ndarray) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    image_name, label_name = fm.FILES[part]
    (directory / image_name).write_bytes(gzip.compress(_idx_bytes(images), compresslevel=1))
    (directory / label_name).write_bytes(gzip.compress(_idx_bytes(labels), compresslevel=1))


def _synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8), rng.integers(0, 10, size=n, dtype=np.uint8)


def _raw(part: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode the real files independently of the code under test."""
    image_path, label_path = fm.find_files(part=part)  # wherever set-up put them
    with gzip.open(image_path) as handle:
        images = np.frombuffer(handle.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(label_path) as handle:
        labels = np.frombuffer(handle.read(), dtype=np.uint8, offset=8)
    return images, labels


def _rows(images_u8: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """One sortable opaque value per (image, label) row, for multiset comparisons."""
    table = np.concatenate([images_u8.reshape(len(images_u8), -1), labels.reshape(-1, 1).astype(np.uint8)], axis=1)
    return np.sort(np.ascontiguousarray(table).view(np.dtype((np.void, table.shape[1]))).ravel())


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return x.mul(fm.STD).add_(fm.MEAN).mul_(255).round_().to(torch.uint8).numpy()


@pytest.fixture(scope="module")
def seed0() -> dict[str, torch.utils.data.TensorDataset]:
    return {split: fashion_mnist(split=split, seed=0) for split in ("train", "calibration", "validation")}


def test_test_split_is_t10k_in_file_order_normalised():
    images, labels = _raw("test")
    ds = fashion_mnist(split="test", subset=500)
    x, y = ds.tensors
    assert x.shape == (500, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (500,) and y.dtype == torch.int64
    expected = (images[:500].astype(np.float64) / 255 - 0.2860) / 0.3530
    np.testing.assert_allclose(x[:, 0].numpy(), expected, atol=1e-5)
    assert np.array_equal(y.numpy(), labels[:500])
    full = fashion_mnist(split="test")
    assert len(full) == 10_000
    assert torch.bincount(full.tensors[1]).tolist() == [1000] * 10
    # the normalisation constants fit the data: about zero mean, unit spread
    assert abs(full.tensors[0].mean().item()) < 0.02 and abs(full.tensors[0].std().item() - 1) < 0.02


def test_train_calibration_validation_partition_the_training_files(seed0):
    assert {k: len(v) for k, v in seed0.items()} == {"train": 54_000, "calibration": 1_000, "validation": 5_000}
    for ds in seed0.values():
        assert ds.tensors[0].shape[1:] == (1, 28, 28) and ds.tensors[1].dtype == torch.int64
    images, labels = _raw("train")
    together = np.sort(
        np.concatenate([_rows(_to_uint8(ds.tensors[0][:, 0]), ds.tensors[1].numpy()) for ds in seed0.values()])
    )
    # the three splits together are exactly the 60,000 training rows, each used once (as a multiset,
    # so a row that occurs once in the files cannot be in two splits)
    assert np.array_equal(together, _rows(images, labels))
    # a seeded permutation, not a contiguous block: every class shows up in calibration
    assert (torch.bincount(seed0["calibration"].tensors[1], minlength=10) > 50).all()


def test_same_seed_is_deterministic_other_seed_differs(seed0):
    again = fashion_mnist(split="validation", seed=0)
    assert torch.equal(again.tensors[0], seed0["validation"].tensors[0])
    assert torch.equal(again.tensors[1], seed0["validation"].tensors[1])
    other = fashion_mnist(split="validation", seed=1)
    assert len(other) == 5_000
    assert not torch.equal(other.tensors[0], seed0["validation"].tensors[0])
    # seed does not touch the official test set
    assert torch.equal(
        fashion_mnist(split="test", seed=5, subset=50).tensors[0], fashion_mnist(split="test", subset=50).tensors[0]
    )


def test_subset_takes_the_first_rows_of_the_split(seed0):
    head = fashion_mnist(split="calibration", subset=10)
    assert torch.equal(head.tensors[0], seed0["calibration"].tensors[0][:10])
    assert torch.equal(head.tensors[1], seed0["calibration"].tensors[1][:10])
    with pytest.raises(ConfigError, match="`subset`=1001 is larger than the 'calibration' split"):
        fashion_mnist(split="calibration", subset=1001)
    with pytest.raises(ConfigError, match="`subset`"):
        fashion_mnist(split="test", subset=0)


def test_unknown_split_suggests_a_close_name():
    with pytest.raises(UnknownNameError, match="Did you mean 'validation'"):
        fashion_mnist(split="valdation")
    with pytest.raises(ConfigError):
        fashion_mnist(split="dev")


def test_missing_root_names_files_and_both_remedies(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        fashion_mnist(tmp_path, split="train")
    message = str(info.value)
    assert str(tmp_path / "train-images-idx3-ubyte.gz") in message
    assert str(tmp_path / "train-labels-idx1-ubyte.gz") in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com" in message
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, DataError)


def test_root_and_its_fashion_mnist_subdir_are_read(tmp_path):
    images, labels = _synthetic(12)
    _write_pair(tmp_path / "fashion-mnist", "test", images, labels)
    ds = fashion_mnist(tmp_path, split="test")
    assert torch.equal(_to_uint8_exact(ds.tensors[0]), torch.from_numpy(images))
    assert ds.tensors[1].tolist() == labels.tolist()
    # only the t10k files are needed for the test split; the train split still reports its files
    with pytest.raises(DataNotFoundError, match="train-images-idx3-ubyte.gz"):
        fashion_mnist(tmp_path, split="train")


def _to_uint8_exact(x: torch.Tensor) -> torch.Tensor:
    u8 = torch.from_numpy(_to_uint8(x[:, 0]))
    np.testing.assert_allclose(x[:, 0].numpy(), (u8.numpy() / 255 - fm.MEAN) / fm.STD, atol=1e-5)
    return u8


def test_env_data_dir_comes_before_the_system_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHSLIM_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("TORCHSLIM_CACHE", str(tmp_path / "cache"))
    assert fm.search_dirs() == [
        tmp_path / "data" / "fashion-mnist",
        fm.SYSTEM_DIR,
        tmp_path / "cache" / "fashion-mnist",
    ]
    assert fm.cache_dir() == tmp_path / "cache" / "fashion-mnist"
    images, labels = _synthetic(7, seed=1)
    _write_pair(tmp_path / "data" / "fashion-mnist", "test", images, labels)
    ds = fashion_mnist(split="test")
    assert len(ds) == 7 and ds.tensors[1].tolist() == labels.tolist()
    monkeypatch.delenv("TORCHSLIM_DATA")
    monkeypatch.delenv("TORCHSLIM_CACHE")
    assert fm.search_dirs() == [fm.SYSTEM_DIR, fm.cache_dir()]
    assert fm.cache_dir() == fm.Path(os.path.expanduser("~/.cache/torchslim/fashion-mnist"))


def test_synthetic_training_files_are_split_like_the_real_ones(tmp_path):
    images, labels = _synthetic(6_010, seed=2)
    _write_pair(tmp_path, "train", images, labels)
    sizes = {s: len(fashion_mnist(tmp_path, split=s)) for s in ("train", "calibration", "validation")}
    assert sizes == {"train": 10, "calibration": 1_000, "validation": 5_000}
    _write_pair(tmp_path, "train", *_synthetic(6_000, seed=2))
    with pytest.raises(DataError, match="too few"):
        fashion_mnist(tmp_path, split="train")


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda blob: blob[: len(blob) // 2], "Corrupt or truncated gzip"),
        (lambda blob: b"not a gzip file at all", "Corrupt or truncated gzip"),
        (lambda blob: gzip.compress(gzip.decompress(blob)[:-5]), "Corrupt or truncated IDX"),
        (lambda blob: gzip.compress(b"\x08\x03" + gzip.decompress(blob)[2:]), "not an IDX file"),
        (lambda blob: gzip.compress(gzip.decompress(blob)[:2] + b"\x0d" + gzip.decompress(blob)[3:]), "not supported"),
    ],
    ids=["truncated-gzip", "not-gzip", "short-data", "bad-magic", "float-dtype"],
)
def test_corrupt_file_is_a_data_error_naming_it(tmp_path, damage, match):
    _write_pair(tmp_path, "test", *_synthetic(20))
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataError, match=match) as info:
        fashion_mnist(tmp_path, split="test")
    assert str(path) in str(info.value)
    assert not isinstance(info.value, DataNotFoundError)


def test_mismatched_images_and_labels_are_a_data_error(tmp_path):
    images, labels = _synthetic(20)
    _write_pair(tmp_path, "test", images, labels[:19])
    with pytest.raises(DataError, match="holds 20 images but .* holds 19 labels"):
        fashion_mnist(tmp_path, split="test")
    _write_pair(tmp_path, "test", images, np.full(20, 10, dtype=np.uint8))
    with pytest.raises(DataError, match="label 10 is out of range"):
        fashion_mnist(tmp_path, split="test")


def test_decoded_arrays_are_cached_read_only_and_reread_when_the_file_changes(tmp_path):
    _write_pair(tmp_path, "test", *_synthetic(5, seed=3))
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    first = fm.read_idx(path)
    assert fm.read_idx(path) is first and not first.flags.writeable
    path.write_bytes(gzip.compress(_idx_bytes(np.arange(6, dtype=np.uint8))))
    assert fm.read_idx(path).tolist() == [0, 1, 2, 3, 4, 5]
