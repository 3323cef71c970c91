"""Each code check fails on a small deliberate violation and passes on a clean tree.

The checks are the functions of scripts/codechecks.py that tests/test_layering.py and
scripts/check-code.sh run on the real tree.
"""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"

TABLE = """
# doc

## Package table

| package | owns | may import |
| --- | --- | --- |
| `core` | basics | - |
| `graph` | graphs | core |
| `measure` | numbers | core, graph |
| `io` | files | core |
| `quantization` | quantizers | core, graph |
| `api.py` | entry | anything |
| `__init__.py` | names | anything |

## Next section

| not | the | table |
| --- | --- | --- |
| `pruning` | x | anything |
"""

CLEAN = {
    "docs/ARCHITECTURE.md": TABLE,
    "src/torchslim/__init__.py": "from torchslim.api import compress\n",
    "src/torchslim/api.py": "import torchslim.quantization\n\n\ndef compress():\n    return torchslim.quantization\n",
    "src/torchslim/core/__init__.py": "from . import errors\n",
    "src/torchslim/core/errors.py": "class Error(Exception):\n    pass\n",
    "src/torchslim/graph/__init__.py": "from torchslim.core.errors import Error\n",
    "src/torchslim/measure/__init__.py": "from ..graph import Error\nfrom . import stats\n",
    "src/torchslim/measure/stats.py": "from torchslim.core import errors\n",
    "src/torchslim/io/__init__.py": "from torchslim import core\n",
    "src/torchslim/quantization/__init__.py": "from torchslim.quantization.modules import public\n",
    "src/torchslim/quantization/modules.py": (
        "def public():\n    return _private()\n\n\ndef _private():\n    return 1\n"
    ),
}


def tree(write, **changes):
    files = dict(CLEAN)
    files.update(changes)
    return write(files)


def layering(checks, root):
    return checks.layering_violations(root / "src" / "torchslim", root / "docs" / "ARCHITECTURE.md")


# ---------------------------------------------------------------- layering


def test_layering_passes_on_a_clean_tree(checks, write):
    assert layering(checks, tree(write)) == []


def test_table_is_read_from_its_section_only(checks, write):
    table = checks.read_table(tree(write) / "docs" / "ARCHITECTURE.md")
    assert table["core"] == frozenset()
    assert table["measure"] == {"core", "graph"}
    assert table["api.py"] is None
    assert "pruning" not in table


@pytest.mark.parametrize(
    ("path", "source"),
    [
        ("src/torchslim/graph/walk.py", "import torchslim.measure.stats\n"),
        ("src/torchslim/graph/walk.py", "from torchslim import measure\n"),
        ("src/torchslim/graph/walk.py", "from torchslim.measure.stats import x\n"),
        ("src/torchslim/graph/walk.py", "from ..measure import stats\n"),
        ("src/torchslim/graph/walk.py", "from .. import measure\n"),
        ("src/torchslim/graph/__init__.py", "from ..measure.stats import x\n"),
        ("src/torchslim/graph/walk.py", "def f():\n    from torchslim.measure import stats\n    return stats\n"),
        ("src/torchslim/graph/walk.py", "if True:\n    import torchslim.io\n"),
        ("src/torchslim/graph/walk.py", "import importlib\n\nimportlib.import_module('torchslim.io.x')\n"),
        ("src/torchslim/core/walk.py", "from torchslim import compress\n"),
        ("src/torchslim/core/walk.py", "import torchslim.api\n"),
    ],
)
def test_layering_fails_on_an_import_against_the_table(checks, write, path, source):
    problems = layering(checks, tree(write, **{path: source}))
    assert len(problems) == 1 and "not in its table row" in problems[0], problems
    assert problems[0].startswith(path.removeprefix("src/"))


def test_layering_fails_on_a_package_missing_from_the_table(checks, write):
    problems = layering(checks, tree(write, **{"src/torchslim/lottery/__init__.py": "x = 1\n"}))
    assert problems == ["lottery: missing from the package table in ARCHITECTURE.md"]


def test_layering_fails_on_a_module_missing_from_the_table(checks, write):
    problems = layering(checks, tree(write, **{"src/torchslim/demo.py": "x = 1\n"}))
    assert problems == ["demo.py: missing from the package table in ARCHITECTURE.md"]


def test_layering_fails_on_a_table_row_for_nothing(checks, write):
    doc = TABLE.replace("| `api.py`", "| `search` | ghosts | core |\n| `api.py`")
    problems = layering(checks, tree(write, **{"docs/ARCHITECTURE.md": doc}))
    assert len(problems) == 1 and problems[0].startswith("search: in the package table but not under")


def test_layering_refuses_a_doc_without_the_table(checks, write):
    root = tree(write, **{"docs/ARCHITECTURE.md": "# doc\n\n## Layers\n"})
    with pytest.raises(ValueError, match="Package table"):
        layering(checks, root)


# ---------------------------------------------------------------- private access


def private(checks, root):
    return checks.private_access_violations(root / "src" / "torchslim")


def test_private_access_passes_on_a_clean_tree(checks, write):
    assert private(checks, tree(write)) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from torchslim.quantization.modules import _private\n", "imports torchslim.quantization.modules._private"),
        ("from ..quantization.modules import public, _private\n", "imports torchslim.quantization.modules._private"),
        ("from torchslim.quantization._impl import x\n", "imports private module torchslim.quantization._impl"),
        ("import torchslim.quantization._impl\n", "imports private module torchslim.quantization._impl"),
        (
            "import torchslim.quantization.modules\n\ny = torchslim.quantization.modules._private\n",
            "reads torchslim.quantization.modules._private",
        ),
        (
            "from torchslim.quantization import modules as qm\n\ny = qm._private()\n",
            "reads torchslim.quantization.modules._private",
        ),
        ('def f(m):\n    return getattr(m, "torchslim_plan", [])\n', 'getattr(..., "torchslim_plan")'),
        ('def f(m):\n    return getattr(m, "weight_q", None)\n', 'getattr(..., "weight_q")'),
        ('def f(m):\n    return hasattr(m, "effective_weight")\n', 'hasattr(..., "effective_weight")'),
        ("def f(m):\n    return m.torchslim_onnx_info()\n", "reads attribute .torchslim_onnx_info"),
    ],
)
def test_private_access_fails_on_reads_of_another_packages_internals(checks, write, source, expected):
    problems = private(checks, tree(write, **{"src/torchslim/measure/peek.py": source}))
    assert len(problems) == 1, problems
    assert problems[0].startswith("torchslim/measure/peek.py:") and problems[0].endswith(expected)


def test_private_access_allows_own_package_and_non_consumers(checks, write):
    own = "from torchslim.measure.stats import _helper\nfrom . import _cache\n"
    other = "from torchslim.quantization.modules import _private\n"  # graph is not a consumer package
    assert private(checks, tree(write, **{"src/torchslim/measure/a.py": own, "src/torchslim/graph/b.py": other})) == []


# ---------------------------------------------------------------- type: ignore


@pytest.mark.parametrize(
    "line",
    [
        "x = f()  # type: ignore\n",
        "x = f()  # type: ignore[attr-defined]\n",
        "x = f()  # type: ignore  # the stub is wrong\n",
        "x = f()  # type: ignore[]  # empty code\n",
        "x = f()  # type: ignore[attr-defined] #\n",
    ],
)
def test_type_ignore_without_code_and_reason_fails(checks, write, line):
    root = write({"pkg/a.py": "def f():\n    return 1\n\n\n" + line})
    problems = checks.type_ignore_violations([root / "pkg"])
    assert len(problems) == 1 and ":5:" in problems[0], problems


def test_type_ignore_with_code_and_reason_passes(checks, write):
    source = (
        "x = f()  # type: ignore[attr-defined]  # set by the mixin's owner\n"
        "y = f()  # type: ignore[arg-type, union-attr]  # torch stub: Tensor | Module\n"
        's = "# type: ignore"  # a string is not a comment\n'
    )
    root = write({"pkg/a.py": source})
    assert checks.type_ignore_violations([root / "pkg"]) == []
    assert [ok for _, _, ok in checks.type_ignores(root / "pkg" / "a.py")] == [True, True]


# ---------------------------------------------------------------- ruff and mypy (the project's configuration)


def test_ruff_passes_on_a_clean_file(checks, write):
    root = write({"pkg/a.py": "import os\n\n\ndef f() -> str:\n    return os.sep\n"})
    rc, output = checks.ruff(["pkg"], cwd=root, config=PYPROJECT)
    assert rc == 0, output


@pytest.mark.parametrize(
    ("source", "rule"),
    [
        ("import os\n", "F401"),  # unused import
        ("import sys\nimport os\n\nprint(os, sys)\n", "I001"),  # import order
        ("TEXT = '" + "a" * 130 + "'\n", "E501"),  # line over 120
        ("from typing import Optional\n\n\ndef f(x: Optional[int]) -> None:\n    print(x)\n", "UP045"),
        ("def f(x=[]):\n    return x\n", "B006"),
    ],
)
def test_ruff_lint_fails_on_a_violation(checks, write, source, rule):
    root = write({"pkg/a.py": source})
    rc, output = checks.ruff(["pkg"], cwd=root, config=PYPROJECT)
    assert rc != 0 and rule in output, output


def test_ruff_format_check_fails_on_an_unformatted_file(checks, write):
    root = write({"pkg/a.py": "x = {  'a':1 }\n"})
    rc, output = checks.ruff(["pkg"], cwd=root, config=PYPROJECT)
    assert rc != 0 and "would be reformatted" in output, output


def test_mypy_is_strict_for_core_only(checks, write):
    untyped = "def f(x):\n    return x\n"
    root = write({"src/torchslim/__init__.py": "", "src/torchslim/other/__init__.py": untyped})
    rc, output = checks.mypy(["src/torchslim"], cwd=root, config=PYPROJECT)
    assert rc == 0, output
    root = write({"src/torchslim/core/__init__.py": untyped})
    rc, output = checks.mypy(["src/torchslim"], cwd=root, config=PYPROJECT)
    assert rc != 0 and "src/torchslim/core/__init__.py:1" in output and "[no-untyped-def]" in output, output
    assert "other/__init__.py" not in output


def test_mypy_fails_on_a_type_error_outside_core(checks, write):
    root = write({"src/torchslim/__init__.py": "", "src/torchslim/io/__init__.py": "x: int = 'text'\n"})
    rc, output = checks.mypy(["src/torchslim"], cwd=root, config=PYPROJECT)
    assert rc != 0 and "[assignment]" in output, output
