"""Shared fixtures of the pruning tests: the toy models of ``pruning_toys.py`` as the ``toys`` fixture."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

_NAME = "torchslim_tests_pruning_toys"


def load_toys() -> ModuleType:
    if _NAME in sys.modules:
        return sys.modules[_NAME]
    spec = importlib.util.spec_from_file_location(
        _NAME, Path(__file__).resolve().parents[1] / "pruning" / "pruning_toys.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[_NAME] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def toys() -> ModuleType:
    """Toy models (MLP, CNN, residual, concat, grouped, attention) and data sets."""
    return load_toys()


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny models run faster on one thread than on two contended ones; restore afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
