"""Fixtures for the tests of the code checks: the check module and a way to write a small source tree."""

import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def checks():
    """scripts/codechecks.py: the same code the real checks (tests/test_layering.py, check-code.sh) run."""
    if "codechecks" not in sys.modules:
        spec = importlib.util.spec_from_file_location("codechecks", ROOT / "scripts" / "codechecks.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["codechecks"] = module
        spec.loader.exec_module(module)
    return sys.modules["codechecks"]


@pytest.fixture
def write(tmp_path):
    """write({"rel/path.py": "source"}) under tmp_path (dedented); returns tmp_path."""

    def _write(files: dict[str, str]) -> Path:
        for rel, text in files.items():
            path = tmp_path / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return tmp_path

    return _write
