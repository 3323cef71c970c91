"""The `fuzz` marker: the full fuzz runs (>= 10,000 inputs per parser). They are also `slow`, so the
fast suite runs only their small smoke versions; run them with ``pytest -m fuzz tests/fuzz``."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fuzz: hypothesis fuzzing of a parser with >= 10,000 inputs (also slow)")
