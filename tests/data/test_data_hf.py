"""Hugging Face `datasets` read offline: a save_to_disk folder or hf:NAME from the local cache."""

import numpy as np
import pytest
import torch

datasets = pytest.importorskip("datasets")
from PIL import Image  # noqa: E402

from torchslim.core.errors import DataError, DataNotFoundError  # noqa: E402
from torchslim.data import load_splits  # noqa: E402
from torchslim.data.hf_datasets import hf_dataset  # noqa: E402
from torchslim.models import build_model  # noqa: E402


def image_dataset(n=40, labelled=True):
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(n)]
    data = {"image": images}
    features = {"image": datasets.Image()}
    if labelled:
        data["label"] = [i % 3 for i in range(n)]
        features["label"] = datasets.ClassLabel(names=["cat", "dog", "owl"])
    return datasets.Dataset.from_dict(data, features=datasets.Features(features))


def test_saved_image_dataset_is_labelled_with_class_names(tmp_path):
    image_dataset().save_to_disk(tmp_path / "ds")
    samples = hf_dataset(tmp_path / "ds")
    assert len(samples) == 40 and samples.labelled and samples.classes == ("cat", "dog", "owl")
    image, label = samples[4]
    assert image.dtype == np.uint8 and image.shape == (32, 32, 3) and label == 1


def test_load_splits_uses_the_models_preprocessing_and_disjoint_splits(tmp_path):
    dd = datasets.DatasetDict({"train": image_dataset(30), "test": image_dataset(10)})
    dd.save_to_disk(tmp_path / "dd")
    splits = load_splits(tmp_path / "dd", model=build_model("lenet5"), batch_size=8, seed=0)
    x, y = next(iter(splits.train))
    assert x.shape[1:] == (1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    total = sum(len(loader.dataset) for loader in (splits.train, splits.calibration, splits.validation, splits.test))
    assert total == 40


def test_text_dataset_without_labels_is_unlabelled(tmp_path):
    datasets.Dataset.from_dict({"text": ["good day", "bad day", "fine"]}).save_to_disk(tmp_path / "t")
    samples = hf_dataset(tmp_path / "t")
    assert samples.kind == "text" and not samples.labelled and samples[0][0] == "good day"


def test_missing_columns_and_uncached_names_are_clear(tmp_path):
    datasets.Dataset.from_dict({"x": [1, 2]}).save_to_disk(tmp_path / "bad")
    with pytest.raises(DataError, match="no input column"):
        hf_dataset(tmp_path / "bad")
    with pytest.raises(DataError, match="no label column 'y'"):
        hf_dataset(tmp_path / "bad", input_column="x", label_column="y")
    with pytest.raises(DataNotFoundError, match="local Hugging Face cache"):
        load_splits("hf:torchslim-no-such-dataset-xyz")
