"""Shared helpers of the safety tests: a small sparse artifact, the CLI run in-process, snapshots."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from torchslim.io import save
from torchslim.models import build_model


def make_artifact(directory: Path) -> Path:
    """lenet5 with half its matrix weights zero (bitmask codecs) and the classifier almost empty (an index codec)."""
    model = build_model("lenet5", seed=0)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.dim() > 1:
                tensor[..., ::2] = 0
        last = model.get_parameter("classifier.weight")
        last.zero_()
        last[0, :5] = 1.0
    return save(model, directory)


@pytest.fixture(scope="session")
def base_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_artifact(tmp_path_factory.mktemp("base") / "lenet5")


@pytest.fixture
def artifact(base_artifact: Path, tmp_path: Path) -> Path:
    """A fresh copy of the base artifact, for a test to damage."""
    target = tmp_path / "art"
    shutil.copytree(base_artifact, target)
    return target


def snapshot(root: Path) -> set[str]:
    """Every path under `root` (hidden ones included), relative."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def assert_clean_failure(code: int, err: str, culprit: str) -> None:
    """Exit code 2, one `error:` line naming `culprit`, no traceback."""
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert culprit.lower() in lines[0].lower(), (culprit, lines[0])
