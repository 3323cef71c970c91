from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from torchslim.core.errors import ArtifactError
from torchslim.measure import directory_bytes, state_dict_bytes


def test_directory_bytes(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"x" * 100)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.json").write_bytes(b"y" * 23)
    os.symlink(tmp_path / "a.bin", tmp_path / "link.bin")  # not counted twice
    assert directory_bytes(tmp_path) == 123
    assert directory_bytes(tmp_path / "a.bin") == 100
    with pytest.raises(ArtifactError, match="does not exist"):
        directory_bytes(tmp_path / "missing")


def test_state_dict_bytes(toys: SimpleNamespace) -> None:
    model = toys.lenet_300_100()
    assert state_dict_bytes(model) == 266_610 * 4
    assert state_dict_bytes(model, dtype_bytes=2) == 266_610 * 2
    tied = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False))
    tied[1].weight = tied[0].weight
    assert state_dict_bytes(tied) == 16 * 4
    bn = nn.BatchNorm1d(3)  # weight, bias, running_mean, running_var (fp32) + num_batches_tracked (int64)
    assert state_dict_bytes(bn) == 4 * 3 * 4 + 8
    assert state_dict_bytes(bn, dtype_bytes=0.5) == 4 * 2 + 8  # 3 elements at 0.5 B -> 2 B each tensor
    assert state_dict_bytes(nn.Linear(2, 2).to(torch.bfloat16)) == 6 * 2
