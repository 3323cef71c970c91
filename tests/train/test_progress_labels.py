"""The training progress bar says what trains (fine-tune, QAT, distill, pruning recovery)."""

from types import SimpleNamespace

import pytest

from torchslim.train import TrainConfig
from torchslim.train.progress import ProgressBar
from torchslim.train.step import training_label


@pytest.mark.parametrize(
    ("technique", "label"),
    [
        ("finetune", "fine-tune"),
        ("quantize", "QAT"),
        ("distill", "distill"),
        ("channel_pruning/round-1", "channel_pruning recovery"),
        ("kmeans_quant", "kmeans_quant"),
    ],
)
def test_training_label(technique, label):
    assert training_label(technique) == label


def test_progress_bar_shows_the_label():
    state = SimpleNamespace(config=TrainConfig(epochs=3), total_steps=6, step=0, epoch=0)
    bar = ProgressBar(state, quiet=True, label="QAT")
    with bar:
        assert [t.description for t in bar._progress.tasks] == ["QAT epoch 1/3"]
        bar.epoch(1)
        assert [t.description for t in bar._progress.tasks] == ["QAT epoch 2/3"]
