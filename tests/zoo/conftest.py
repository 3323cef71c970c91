"""The zoo suite: registers the ``zoo`` marker and makes ``tests.zoo`` importable from the repository root."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "zoo: the architecture coverage suite (tests/zoo; python -m tests.zoo.run)")
