"""The user's own data: image folders, tables, text files and iterables as seeded, disjoint DataSplits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from torchslim.core.context import DataSplits
from torchslim.core.errors import ConfigError, DataError, UnknownNameError
from torchslim.data import (
    UNLABELLED,
    ImagePreprocess,
    from_iterable,
    image_folder,
    is_labelled,
    load_splits,
    preprocess_of,
    split_samples,
    split_sizes,
    with_pseudo_labels,
)


def _png(path, colour, size=(12, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


@pytest.fixture
def labelled_folder(tmp_path):
    root = tmp_path / "pets"
    for k, cls in enumerate(("cat", "dog")):
        for i in range(10):
            _png(root / cls / f"{i}.png", (200 * k, 10 * i, 50), size=(12 + i, 10))
    return root


def _all(loader):
    xs, ys = zip(*loader, strict=True)
    return torch.cat(xs), torch.cat(ys)


def _rows(loader):
    return set(loader.dataset.indices)


def test_image_folder_with_classes_gives_disjoint_seeded_splits(labelled_folder):
    splits = load_splits(labelled_folder, preprocess=ImagePreprocess(size=8), batch_size=4, seed=3)
    assert isinstance(splits, DataSplits) and splits.num_classes == 2 and splits.name == "pets"
    sizes = split_sizes(splits)
    assert sizes == {"train": 14, "calibration": 2, "validation": 2, "test": 2}
    rows = [_rows(getattr(splits, s)) for s in ("train", "calibration", "validation", "test")]
    assert set().union(*rows) == set(range(20)) and sum(len(r) for r in rows) == 20  # disjoint, complete
    x, y = _all(splits.test)
    assert x.shape == (2, 3, 8, 8) and x.dtype == torch.float32 and set(y.tolist()) <= {0, 1}
    assert is_labelled(splits)
    # the same seed, the same cut; another seed, another cut
    again = load_splits(labelled_folder, preprocess=ImagePreprocess(size=8), batch_size=4, seed=3)
    assert _rows(again.test) == rows[3] and _rows(again.train) == rows[0]
    other = load_splits(labelled_folder, preprocess=ImagePreprocess(size=8), batch_size=4, seed=4)
    assert (_rows(other.test), _rows(other.calibration)) != (rows[3], rows[1])
    # labels follow the class folders: every "dog" image has red 200
    samples = image_folder(labelled_folder)
    assert samples.classes == ("cat", "dog")
    for i in range(len(samples)):
        image, label = samples[i]
        assert image.dtype == np.uint8 and image.shape[2] == 3 and int(image[0, 0, 0]) == 200 * label


def test_unlabelled_folder_calibrates_and_compares(tmp_path):
    for i in range(6):
        _png(tmp_path / "photos" / f"p{i}.jpg", (i * 40, 0, 0))
    splits = load_splits(tmp_path / "photos", preprocess=ImagePreprocess(size=4), seed=0)
    assert split_sizes(splits) == {"calibration": 3, "test": 3}
    assert splits.train is None and splits.validation is None and splits.num_classes is None
    assert not is_labelled(splits)
    _, y = _all(splits.calibration)
    assert y.tolist() == [UNLABELLED] * 3


def test_model_preprocessing_is_used_for_built_ins(labelled_folder):
    from torchslim.models import build_model
    from torchslim.models.efficientnet import efficientnet_preprocess

    model = build_model("efficientnet-lite0", pretrained=False, seed=0)
    pre = preprocess_of(model)
    image = np.array(Image.open(next(labelled_folder.glob("dog/*.png"))).convert("RGB"))
    assert torch.allclose(pre(image), efficientnet_preprocess(image), atol=1e-5)  # same as the model's own
    splits = load_splits(labelled_folder, model=model, batch_size=2, fractions={"test": 1.0})
    x, _ = next(iter(splits.test))
    assert x.shape == (2, 3, 224, 224)
    cnn = build_model("fmnist-cnn", seed=0)
    x, _ = next(iter(load_splits(labelled_folder, model=cnn, fractions={"test": 1.0}).test))
    assert x.shape[1:] == (1, 28, 28) and cnn(x).shape == (x.shape[0], 10)
    # an attribute on the model wins over the table
    cnn.torchslim_preprocess = ImagePreprocess(size=5, channels=1)
    assert preprocess_of(cnn).size == 5


def test_images_of_different_sizes_need_preprocessing(labelled_folder):
    splits = load_splits(labelled_folder, fractions={"test": 1.0}, batch_size=4)
    with pytest.raises(DataError, match="different shapes.*preprocess="):
        next(iter(splits.test))


def test_tables_npz_and_csv(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 5)).astype(np.float32), rng.integers(0, 3, size=30)
    np.savez(tmp_path / "t.npz", x=x, y=y)
    splits = load_splits(tmp_path / "t.npz", batch_size=64, seed=1)
    assert splits.num_classes == 3 and sum(split_sizes(splits).values()) == 30
    tx, ty = _all(splits.train)
    assert tx.shape == (21, 5) and tx.dtype == torch.float32 and ty.dtype == torch.int64
    rows = sorted(splits.train.dataset.indices)
    assert np.allclose(np.sort(tx.numpy(), axis=0), np.sort(x[rows], axis=0))
    csv_path = tmp_path / "t.csv"
    csv_path.write_text("a,b,label\n" + "".join(f"{i},{i * 2},{i % 2}\n" for i in range(10)), encoding="utf-8")
    csv_splits = load_splits(csv_path, fractions={"train": 1, "test": 1}, batch_size=10)
    cx, cy = _all(csv_splits.train)
    assert cx.shape == (5, 2) and torch.equal(cx[:, 1], 2 * cx[:, 0]) and torch.equal(cy, cx[:, 0].long() % 2)
    (tmp_path / "bad.csv").write_text("a,b\n1,x\n", encoding="utf-8")
    with pytest.raises(DataError, match="bad.csv.*number"):
        load_splits(tmp_path / "bad.csv")


def test_text_file_of_sentences(tmp_path):
    plain = tmp_path / "s.txt"
    plain.write_text("\n".join(f"Sentence number {i}." for i in range(8)) + "\n\n", encoding="utf-8")
    splits = load_splits(plain, batch_size=8)
    texts, labels = next(iter(splits.calibration))
    assert isinstance(texts, list) and len(texts) == 4 and all(t.startswith("Sentence") for t in texts)
    assert not is_labelled(splits) and labels.tolist() == [UNLABELLED] * 4
    tagged = tmp_path / "l.txt"
    tagged.write_text("".join(f"{'pos' if i % 2 else 'neg'}\ttext {i}\n" for i in range(10)), encoding="utf-8")
    ts = load_splits(tagged, fractions={"train": 1.0})
    texts, labels = next(iter(ts.train))
    assert ts.num_classes == 2 and all(int(t.split()[1]) % 2 == int(y) for t, y in zip(texts, labels, strict=True))


def test_iterables_through_the_api():
    pairs = [(torch.full((3,), float(i)), i % 4) for i in range(40)]
    splits = split_samples(from_iterable(pairs), seed=0, batch_size=8)
    assert splits.num_classes == 4 and split_sizes(splits) == {
        "train": 28,
        "calibration": 4,
        "validation": 4,
        "test": 4,
    }
    x, y = _all(splits.validation)
    assert torch.equal(x[:, 0].long() % 4, y)
    bare = split_samples(from_iterable(torch.randn(10, 2)), batch_size=5)
    assert not is_labelled(bare) and split_sizes(bare) == {"calibration": 5, "test": 5}


def test_pseudo_labels_from_the_original_model():
    model = torch.nn.Linear(3, 5)
    splits = split_samples(from_iterable(torch.randn(20, 3)), fractions={"train": 1, "test": 1}, batch_size=4)
    labelled = with_pseudo_labels(splits, model)
    x, y = _all(labelled.train)
    assert torch.equal(y, model(x).argmax(-1)) and labelled.num_classes == 5
    assert labelled.test is splits.test


def test_errors_name_what_is_wrong(tmp_path):
    with pytest.raises(UnknownNameError, match="neither a built-in dataset.*Did you mean 'digits'"):
        load_splits("digitz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        load_splits(tmp_path / "empty")
    _png(tmp_path / "mixed" / "a" / "1.png", (0, 0, 0))
    _png(tmp_path / "mixed" / "2.png", (0, 0, 0))
    with pytest.raises(DataError, match="both class subfolders"):
        load_splits(tmp_path / "mixed")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="Cannot decode image.*x.png"):
        next(iter(load_splits(tmp_path / "broken", fractions={"test": 1}).test))
    with pytest.raises(ConfigError, match="unknown split 'tets'.*Did you mean 'test'"):
        load_splits(tmp_path / "mixed" / "a", fractions={"tets": 1})
    with pytest.raises(DataError, match="too few"):
        split_samples(from_iterable(torch.randn(2, 2)), fractions={"train": 1, "test": 1, "validation": 1})


def test_caps_and_options_that_do_not_apply(labelled_folder):
    pre = ImagePreprocess(size=4)
    splits = load_splits(labelled_folder, preprocess=pre, train_samples=5, eval_samples=1, seed=2)
    assert split_sizes(splits) == {"train": 5, "calibration": 1, "validation": 1, "test": 1}
    full = load_splits(labelled_folder, preprocess=pre, seed=2)
    assert _rows(splits.train) <= _rows(full.train) and _rows(splits.test) <= _rows(full.test)
    with pytest.raises(ConfigError, match="`root` is for built-in datasets"):
        load_splits(labelled_folder, root="/elsewhere")
    with pytest.raises(ConfigError, match="`fractions` applies to data read from a path"):
        load_splits("digits", fractions={"test": 1})
    with pytest.raises(ConfigError, match="`preprocess` applies"):
        load_splits("digits", preprocess=pre)
    with pytest.raises(ConfigError, match="`eval_samples`"):
        load_splits(labelled_folder, eval_samples=0)


def test_preprocess_from_a_string():
    assert ImagePreprocess.parse("size=224, mean=127,std=128") == ImagePreprocess(size=224, mean=127.0, std=128.0)
    assert ImagePreprocess.parse("") == ImagePreprocess()
    with pytest.raises(ConfigError, match="Did you mean 'size'"):
        ImagePreprocess.parse("sise=3")
    with pytest.raises(ConfigError, match="not a number"):
        ImagePreprocess.parse("std=x")
    with pytest.raises(ConfigError, match="channels must be 1 or 3"):
        ImagePreprocess.parse("channels=2")
