"""Unlabelled data through `compress`: judged by agreement with the original model, never accuracy."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from torch import nn

import torchslim as ts


def _tiny_cnn() -> nn.Module:
    import torch

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 4)
    )


@pytest.fixture
def loose_images(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    for i in range(24):
        Image.fromarray(rng.integers(0, 255, size=(16, 16), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_int8_on_loose_images_reports_agreement_not_accuracy(loose_images):
    model = _tiny_cnn()
    preprocess = ts.data.ImagePreprocess.parse("size=16,mean=0,std=255,channels=1")
    splits = ts.data.load_splits(loose_images, batch_size=4, preprocess=preprocess)
    assert not ts.data.is_labelled(splits)
    result = ts.compress(model, splits, recipe="int8", repeats=1, quiet=True, runtime="pytorch")
    before, after = result.report.before, result.report.after
    assert before["accuracy"] is None and after["accuracy"] is None
    agreement = after["agreement"]
    assert agreement["samples"] == ts.data.split_sizes(splits)["test"] > 0
    assert 0.0 <= agreement["top1_agreement"] <= 1.0
    assert agreement["sqnr_db"] > 10.0  # int8 of a small random CNN stays close to the original


def test_the_compressed_result_deploys_next_to_its_original(loose_images):
    model = _tiny_cnn()
    preprocess = ts.data.ImagePreprocess.parse("size=16,mean=0,std=255,channels=1")
    splits = ts.data.load_splits(loose_images, batch_size=4, preprocess=preprocess)
    result = ts.compress(model, splits, recipe="int8", repeats=1, quiet=True, runtime="pytorch")
    assert result.original is model
    selection = result.deploy(batch=2, threads=1, target="onnxruntime")
    assert selection.best == "onnxruntime"
    facts = selection.facts("onnxruntime")
    assert facts.latency is not None and facts.latency.median_ms > 0
    assert facts.baseline_latency is not None  # the original model was timed in the same rounds


@pytest.fixture
def labelled_images(tmp_path):
    rng = np.random.default_rng(1)
    for k in range(3):
        folder = tmp_path / "labelled" / f"class{k}"
        folder.mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 255, size=(16, 16), dtype=np.uint8)).save(folder / f"{i}.png")
    return tmp_path / "labelled"


def test_a_model_without_a_head_for_the_labels_is_judged_by_agreement(labelled_images):
    """4 outputs, 3 classes: argmax accuracy would mean nothing, decided before the recipe runs."""
    model = _tiny_cnn()
    preprocess = ts.data.ImagePreprocess.parse("size=16,mean=0,std=255,channels=1")
    splits = ts.data.load_splits(labelled_images, batch_size=4, preprocess=preprocess)
    assert ts.data.is_labelled(splits) and splits.num_classes == 3
    result = ts.compress(model, splits, recipe="int8", repeats=1, quiet=True, runtime="pytorch")
    assert result.report.before["accuracy"] is None and result.report.after["accuracy"] is None
    assert result.report.after["agreement"]["samples"] > 0
    assert any("not one logit per class of the data's 3 classes" in note for note in result.report.notes)


def test_head_mismatch_rule():
    import torch

    model, x = _tiny_cnn(), torch.zeros(2, 1, 16, 16)
    assert ts.measure.head_mismatch(model, x, 4) is None
    assert ts.measure.head_mismatch(model, x, None) is None
    assert "4 per sample" in ts.measure.head_mismatch(model, x, 3)
