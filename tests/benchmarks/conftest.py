"""Fixtures of the benchmark-harness tests: benchmarks/_harness.py, benchmarks/_deploy_report.py and
scripts/readme_tables.py loaded as modules (they are scripts, not part of the package)."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path) -> ModuleType:
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def harness() -> ModuleType:
    return _load("_harness", ROOT / "benchmarks" / "_harness.py")


@pytest.fixture(scope="session")
def deploy_report(harness: ModuleType) -> ModuleType:
    return _load("_deploy_report", ROOT / "benchmarks" / "_deploy_report.py")


@pytest.fixture(scope="session")
def readme_tables() -> ModuleType:
    return _load("readme_tables", ROOT / "scripts" / "readme_tables.py")


@pytest.fixture(scope="session")
def backends_bench(harness: ModuleType) -> ModuleType:
    return _load("backends_bench", ROOT / "benchmarks" / "backends.py")
