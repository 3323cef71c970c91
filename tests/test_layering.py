"""The rule of direction (docs/ARCHITECTURE.md): packages import only the layers below them."""

import ast
import pathlib

import torchslim

ALLOWED = {
    "core": set(),
    "data": {"core"},
    "models": {"core"},
    "measure": {"core", "graph"},
    "io": {"core", "models"},
    "train": {"core", "io"},
    "graph": {"core", "io"},
    "report": {"core", "io"},
    "recipes": {"core"},
    "pruning": {"core", "graph", "io", "measure", "models", "train"},
    "quantization": {"core", "graph", "io", "measure", "models", "train"},
    # width students are made by structured pruning of the teacher (issue 6), imported lazily
    "distillation": {"core", "graph", "io", "measure", "models", "train", "pruning"},
}


def imported_packages(path: pathlib.Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("torchslim."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("torchslim."))
    return found


def test_packages_only_import_lower_layers():
    root = pathlib.Path(torchslim.__file__).parent
    violations = []
    for package, allowed in ALLOWED.items():
        for path in (root / package).rglob("*.py"):
            for dep in imported_packages(path) - allowed - {package}:
                violations.append(f"{path.relative_to(root)} imports torchslim.{dep}")
    assert not violations, "\n".join(violations)
