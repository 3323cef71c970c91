"""The rule of direction and the layer contract, read from the one declared table.

The table of packages and allowed imports is the one docs/ARCHITECTURE.md shows under
"## Package table"; the logic lives in scripts/codechecks.py, whose own tests (tests/checks/) show
that each check fails on a deliberate violation.
"""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "torchslim"
DOC = ROOT / "docs" / "ARCHITECTURE.md"


def _codechecks():
    if "codechecks" not in sys.modules:
        spec = importlib.util.spec_from_file_location("codechecks", ROOT / "scripts" / "codechecks.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["codechecks"] = module
        spec.loader.exec_module(module)
    return sys.modules["codechecks"]


def test_table_covers_every_package_and_module():
    checks = _codechecks()
    table = checks.read_table(DOC)
    units = checks.units_of(SRC)
    assert sorted(set(units) - set(table)) == [], "packages or modules missing from the package table"
    assert sorted(set(table) - set(units)) == [], "package table rows for things that do not exist"
    assert table["core"] == frozenset(), "core imports nothing else"


def test_packages_only_import_what_the_table_allows():
    violations = _codechecks().layering_violations(SRC, DOC)
    assert not violations, "\n".join(violations)


def test_no_private_access_across_packages():
    """measure/, io/, report/ and deploy/ read compressed layers through torchslim.core.layer only."""
    violations = _codechecks().private_access_violations(SRC)
    assert not violations, "\n".join(violations)
