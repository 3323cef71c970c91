"""A static check of src/: no unpickling, no unsafe YAML.

Fails on any ``torch.load`` without ``weights_only=True``, any ``pickle``/``joblib``/``dill``/
``cloudpickle`` load, ``numpy.load(allow_pickle=True)``, ``torch.jit.load``/``torch.package``, and any
``yaml.load``/``full_load``/``unsafe_load`` or ``yaml.Loader``/``FullLoader``/``UnsafeLoader``
(``safe_load``, ``SafeLoader`` and ``CSafeLoader`` are fine)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "torchslim"
UNPICKLERS = {"pickle", "cPickle", "_pickle", "joblib", "dill", "cloudpickle", "shelve", "marshal"}
LOADS = {"load", "loads", "Unpickler", "open"}
UNSAFE_YAML = {"load", "load_all", "full_load", "full_load_all", "unsafe_load", "unsafe_load_all"}
UNSAFE_LOADERS = {"Loader", "FullLoader", "UnsafeLoader", "CLoader", "CFullLoader", "CUnsafeLoader"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def violations_in(source: str, filename: str) -> list[str]:
    """Every unsafe load in `source`, as 'file:line: reason'."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Attribute) and _dotted(node).startswith("yaml.") and node.attr in UNSAFE_LOADERS:
            found.append(f"{filename}:{node.lineno}: yaml.{node.attr} can build arbitrary objects")
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names]
            module = node.module if isinstance(node, ast.ImportFrom) else None
            if module == "yaml" and set(names) & (UNSAFE_YAML | UNSAFE_LOADERS):
                found.append(f"{filename}:{node.lineno}: imports an unsafe YAML loader")
            if module in UNPICKLERS and set(names) & LOADS:
                found.append(f"{filename}:{node.lineno}: imports an unpickler from {module}")
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        head, _, last = name.rpartition(".")
        if name == "torch.load" or (last == "load" and head.endswith("torch")):
            if not _is_true(_keyword(node, "weights_only")):
                found.append(f"{filename}:{node.lineno}: torch.load without weights_only=True")
        elif head.split(".")[-1:] and head.split(".")[-1] in UNPICKLERS and last in LOADS:
            found.append(f"{filename}:{node.lineno}: {name} unpickles")
        elif name in ("torch.jit.load", "torch.package.PackageImporter"):
            found.append(f"{filename}:{node.lineno}: {name} runs pickled code")
        elif last == "load" and head in ("np", "numpy") and _is_true(_keyword(node, "allow_pickle")):
            found.append(f"{filename}:{node.lineno}: numpy.load(allow_pickle=True) unpickles")
        elif head == "yaml" and last in UNSAFE_YAML:
            loader = _keyword(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
            if (
                last in ("load", "load_all")
                and loader is not None
                and _dotted(loader).split(".")[-1]
                in (
                    "SafeLoader",
                    "CSafeLoader",
                )
            ):
                continue
            found.append(f"{filename}:{node.lineno}: {name} without SafeLoader")
    return found


def test_src_has_no_unsafe_loads():
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 50
    problems = [v for path in files for v in violations_in(path.read_text(encoding="utf-8"), str(path))]
    assert problems == []


@pytest.mark.parametrize(
    "code",
    [
        "import torch\ntorch.load('x')",
        "import torch\ntorch.load('x', weights_only=False)",
        "import pickle\npickle.load(f)",
        "import pickle\npickle.loads(b)",
        "from pickle import loads",
        "import joblib\njoblib.load('x')",
        "import yaml\nyaml.load(text)",
        "import yaml\nyaml.load(text, Loader=yaml.Loader)",
        "import yaml\nyaml.unsafe_load(text)",
        "import yaml\nyaml.full_load(text)",
        "from yaml import FullLoader",
        "import numpy as np\nnp.load('x', allow_pickle=True)",
        "import torch\ntorch.jit.load('x')",
    ],
)
def test_the_check_catches(code):
    assert violations_in(code, "x.py")


@pytest.mark.parametrize(
    "code",
    [
        "import torch\ntorch.load('x', map_location='cpu', weights_only=True)",
        "import yaml\nyaml.safe_load(text)",
        "import yaml\nyaml.load(text, Loader=yaml.SafeLoader)",
        "import yaml\nloader = yaml.SafeLoader(text)",
        "import numpy as np\nnp.load('x')",
        "import json\njson.loads(s)",
    ],
)
def test_the_check_allows(code):
    assert violations_in(code, "x.py") == []
