"""The dataset table and `load_splits`: names, aliases, DataLoaders, caps and seeded shuffling."""

from __future__ import annotations

import pytest
import torch

from torchslim.core.context import DataSplits
from torchslim.core.errors import ConfigError, UnknownNameError
from torchslim.data import DATASETS, dataset_info, digits, fashion_mnist, load_splits, tweets


def test_table_describes_the_three_datasets():
    assert set(DATASETS) == {"fashion-mnist", "digits", "tweets"}
    assert (DATASETS["fashion-mnist"].input_shape, DATASETS["fashion-mnist"].num_classes) == ((1, 28, 28), 10)
    assert (DATASETS["digits"].input_shape, DATASETS["digits"].num_classes) == ((1, 8, 8), 10)
    assert (DATASETS["tweets"].input_shape, DATASETS["tweets"].num_classes) == (None, 3)
    assert DATASETS["fashion-mnist"].loader is fashion_mnist and DATASETS["digits"].loader is digits
    assert DATASETS["tweets"].loader is tweets
    for name, info in DATASETS.items():
        assert info.name == name and len(info.classes) == info.num_classes and info.description
    with pytest.raises(TypeError):
        DATASETS["x"] = DATASETS["digits"]  # a read-only table


def test_names_and_aliases():
    assert dataset_info("fmnist") is DATASETS["fashion-mnist"]
    assert dataset_info(" Fashion-MNIST ") is DATASETS["fashion-mnist"]
    with pytest.raises(UnknownNameError, match="Did you mean 'fashion-mnist'"):
        dataset_info("fashon-mnist")
    with pytest.raises(ConfigError, match="Unknown dataset 'cifar10'"):
        load_splits("cifar10")


def _epoch(loader) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*loader, strict=False)
    return torch.cat(xs), torch.cat(ys)


def test_digits_loaders_shapes_order_and_seeded_shuffle():
    splits = load_splits("digits", batch_size=32, seed=0)
    assert isinstance(splits, DataSplits) and (splits.name, splits.num_classes) == ("digits", 10)
    batches = list(splits.train)  # the first epoch
    x, y = batches[0]
    assert x.shape == (32, 1, 8, 8) and x.dtype == torch.float32 and y.shape == (32,) and y.dtype == torch.int64
    assert len(batches) == 34 and batches[-1][0].shape == (1080 - 33 * 32, 1, 8, 8)
    tx, ty = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    # evaluation splits come in their fixed order
    for split in ("calibration", "validation", "test"):
        ex, ey = _epoch(getattr(splits, split))
        ref = digits(split=split)
        assert torch.equal(ex, ref.tensors[0]) and torch.equal(ey, ref.tensors[1])
    # train is shuffled: same rows, another order, the same order for the same seed
    ref = digits(split="train")
    assert len(tx) == 1080 and not torch.equal(ty, ref.tensors[1])
    assert torch.equal(torch.sort(ty).values, torch.sort(ref.tensors[1]).values)
    again = _epoch(load_splits("digits", batch_size=32, seed=0).train)
    assert torch.equal(again[0], tx) and torch.equal(again[1], ty)
    other = _epoch(load_splits("digits", batch_size=32, seed=1).train)
    assert not torch.equal(other[1], ty)
    # the next epoch of the same loader draws a new order
    assert not torch.equal(_epoch(splits.train)[1], ty)


def test_fashion_mnist_caps():
    splits = load_splits("fmnist", batch_size=64, train_samples=256, eval_samples=2_000)
    assert splits.name == "fashion-mnist"
    sizes = {s: len(getattr(splits, s).dataset) for s in ("train", "calibration", "validation", "test")}
    assert sizes == {"train": 256, "calibration": 1_000, "validation": 2_000, "test": 2_000}
    assert torch.equal(splits.train.dataset.tensors[0], fashion_mnist(split="train", subset=256).tensors[0])
    assert torch.equal(splits.test.dataset.tensors[1], fashion_mnist(split="test", subset=2_000).tensors[1])
    x, y = next(iter(splits.validation))
    assert x.shape == (64, 1, 28, 28) and y.shape == (64,)
    # a cap above a split's size keeps the whole split (checked on the small digits set)
    small = load_splits("digits", train_samples=5_000, eval_samples=100)
    sizes = {s: len(getattr(small, s).dataset) for s in ("train", "calibration", "validation", "test")}
    assert sizes == {"train": 1_080, "calibration": 100, "validation": 100, "test": 100}


def test_tweets_batches_are_lists_of_strings():
    splits = load_splits("tweets", batch_size=8, train_samples=40, eval_samples=16)
    texts, labels = next(iter(splits.train))
    assert isinstance(texts, list) and len(texts) == 8 and all(isinstance(t, str) for t in texts)
    assert labels.dtype == torch.int64 and labels.shape == (8,)
    assert splits.num_classes == 3 and len(splits.test.dataset) == 16
    assert list(next(iter(splits.test))[0]) == tweets(split="test", subset=8).texts


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"batch_size": 0}, "`batch_size`"),
        ({"batch_size": None}, "`batch_size`"),
        ({"train_samples": 0}, "`train_samples`"),
        ({"eval_samples": -5}, "`eval_samples`"),
        ({"seed": -1}, "`seed`"),
        ({"num_workers": -1}, "`num_workers`"),
        ({"root": "/nowhere"}, "`root` is not used by dataset 'digits'"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        load_splits("digits", **kwargs)
