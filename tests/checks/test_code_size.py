"""The size rules hold on src/: no file over 500 lines, no function over 60 lines without a reason.

The small-tree tests in test_code_metrics.py show these counters fail on a deliberate violation.
"""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_metrics():
    spec = importlib.util.spec_from_file_location("code_metrics_for_size", ROOT / "scripts" / "code_metrics.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sources() -> list[Path]:
    return sorted((ROOT / "src" / "torchslim").rglob("*.py"))


def test_no_source_file_over_500_lines():
    metrics = load_metrics()
    assert [(str(p.relative_to(ROOT)), n) for p, n in metrics.long_files(_sources())] == []


def test_no_function_over_60_lines_without_a_reason():
    metrics = load_metrics()
    unexplained = [
        f"{path.relative_to(ROOT)}: {name} ({lines} lines)"
        for path in _sources()
        for name, lines, explained in metrics.long_functions(path)
        if not explained
    ]
    assert unexplained == []
