"""The code checks of `make test`, importable so each check's own test runs the same code on a violation.

* layering: one declared table of packages and allowed imports (docs/ARCHITECTURE.md, "## Package table")
  covers every package and top-level module under ``src/torchslim``; every ``import torchslim.x``,
  ``from torchslim import x``, ``from torchslim.x import y``, relative import and import inside a
  function or ``if`` block must follow it.
* private access: measure/, io/, report/ and deploy/ use only other packages' public names and the
  ``torchslim.core.layer`` contract: no ``_name`` imported or read from another package, no
  ``torchslim_*`` attributes, no ``getattr(m, "weight_q")``-style duck typing of compressed layers.
* type-ignore: every ``# type: ignore`` has an error code and a reason (``# type: ignore[code]  # why``).
* ruff (lint + format check) and mypy run as subprocesses of this interpreter.

Command line: ``python scripts/codechecks.py {layering,private,type-ignores,ruff,mypy} [paths...]``.
"""

from __future__ import annotations

import argparse
import ast
import io
import re
import subprocess
import sys
import tokenize
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ANYTHING = "anything"
TABLE_HEADING = "## Package table"
CONSUMERS = ("measure", "io", "report", "deploy")
"""Packages that read compressed layers through the contract only (private-access check)."""
LAYER_INTERNALS = frozenset(
    {"weight_q", "weight_bits", "act_bits", "stored_codes", "effective_weight", "stored_weight", "weight_scale"}
)
"""Attribute names that, read through getattr/hasattr, duck-type a compressed layer instead of the contract."""
RUFF_PATHS = ("src", "tests", "scripts", "benchmarks")


@dataclass(frozen=True)
class Import:
    """One import of a torchslim module found in a file: the unit it reaches and the names it takes."""

    module: str
    names: tuple[str, ...]
    line: int


# ---------------------------------------------------------------- the package table


def read_table(doc: Path) -> dict[str, frozenset[str] | None]:
    """``{unit: allowed units}`` from the markdown table under ``## Package table`` (None: anything).

    Columns: package | owns | may import. A unit is a package name (``core``) or a top-level module
    file (``api.py``); "may import" is ``-``, ``anything`` or a comma-separated list.
    """
    lines = doc.read_text(encoding="utf-8").splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == TABLE_HEADING)
    except StopIteration:
        raise ValueError(f"{doc} has no {TABLE_HEADING!r} section") from None
    table: dict[str, frozenset[str] | None] = {}
    for line in lines[start + 1 :]:
        if line.startswith("## "):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") else []
        if len(cells) != 3 or set(cells[0]) <= set("-: ") or cells[0].lower() == "package":
            continue
        names = [n.strip("` ") for n in cells[0].split(",")]
        deps = cells[2].strip("` ")
        listed = frozenset(d.strip("` ") for d in deps.split(",") if d.strip("` -"))
        allowed = None if deps.lower() == ANYTHING else listed
        for name in names:
            table[name] = allowed
    if not table:
        raise ValueError(f"{doc}: the {TABLE_HEADING!r} section has no table rows")
    return table


def units_of(src: Path) -> dict[str, list[Path]]:
    """Every package (folder with .py files) and top-level module under the package root `src`."""
    units: dict[str, list[Path]] = {}
    for path in sorted(src.glob("*.py")):
        units[path.name] = [path]
    for folder in sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))):
        files = sorted(folder.rglob("*.py"))
        if files:
            units[folder.name] = files
    return units


def unit_of_module(module: str, units: Iterable[str], top: str = "torchslim") -> str | None:
    """The unit a dotted module name belongs to (``torchslim.api`` -> ``api.py``), None if not ours."""
    parts = module.split(".")
    if parts[0] != top:
        return None
    if len(parts) == 1:
        return "__init__.py"
    if parts[1] in units:
        return parts[1]
    if parts[1] + ".py" in units:
        return parts[1] + ".py"
    return "__init__.py"  # a name of the top-level package (`from torchslim import compress`)


# ---------------------------------------------------------------- imports


def module_name(path: Path, src: Path, top: str = "torchslim") -> str:
    rel = path.relative_to(src).with_suffix("")
    parts = [top, *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(node: ast.ImportFrom, here: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = here.split(".") if is_package else here.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
    return ".".join([*base, node.module] if node.module else base)


def imports_in(path: Path, src: Path, top: str = "torchslim") -> Iterator[Import]:
    """Every torchslim import in `path` (anywhere in the file: functions, if blocks, try blocks)."""
    here = module_name(path, src, top)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == top or alias.name.startswith(top + "."):
                    yield Import(alias.name, (), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(node, here, path.name == "__init__.py")
            if module != top and not module.startswith(top + "."):
                continue
            names = tuple(a.name for a in node.names)
            if module == top:  # `from torchslim import x, y`: each name may be a unit of its own
                for name in names:
                    yield Import(f"{top}.{name}", (), node.lineno)
            else:
                yield Import(module, names, node.lineno)
        elif isinstance(node, ast.Call) and _dynamic_import(node):
            target = node.args[0]
            assert isinstance(target, ast.Constant)
            if str(target.value).startswith(top + "."):
                yield Import(str(target.value), (), node.lineno)


def _dynamic_import(node: ast.Call) -> bool:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return (
        name in {"import_module", "__import__"}
        and bool(node.args)
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    )


def layering_violations(src: Path, doc: Path, top: str = "torchslim") -> list[str]:
    """Units missing from (or stale in) the table, and every import the table does not allow."""
    table = read_table(doc)
    units = units_of(src)
    problems = [f"{u}: missing from the package table in {doc.name}" for u in units if u not in table]
    problems += [f"{u}: in the package table but not under {src}" for u in table if u not in units]
    for unit, files in units.items():
        allowed = table.get(unit)
        if unit not in table or allowed is None:
            continue
        for path in files:
            for imp in imports_in(path, src, top):
                dep = unit_of_module(imp.module, units, top)
                if dep is not None and dep != unit and dep not in allowed:
                    rel = path.relative_to(src.parent)
                    problems.append(f"{rel}:{imp.line}: {unit} imports {imp.module} ({dep}), not in its table row")
    return problems


# ---------------------------------------------------------------- private access


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _dotted(node: ast.expr) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def _aliases(tree: ast.AST, here: str, is_package: bool, top: str) -> dict[str, str]:
    """Local names bound to torchslim modules (``import torchslim.x as y``, ``from torchslim.x import mod``)."""
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == top:
                    bound[a.asname or a.name.split(".")[0]] = a.name if a.asname else top
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(node, here, is_package)
            if module.split(".")[0] == top:
                for a in node.names:
                    bound[a.asname or a.name] = f"{module}.{a.name}"
    return bound


def private_access_in(path: Path, src: Path, top: str = "torchslim") -> Iterator[tuple[int, str]]:
    """(line, what) for each read of another package's private names or of layer internals by name."""
    here = module_name(path, src, top)
    own = here.split(".")[1] if "." in here else ""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    bound = _aliases(tree, here, path.name == "__init__.py", top)

    def foreign(module: str) -> bool:
        parts = module.split(".")
        return parts[0] == top and len(parts) > 1 and parts[1] != own

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if foreign(a.name) and any(_private(p) for p in a.name.split(".")):
                    yield node.lineno, f"imports private module {a.name}"
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(node, here, path.name == "__init__.py")
            if foreign(module):
                if any(_private(p) for p in module.split(".")):
                    yield node.lineno, f"imports private module {module}"
                for a in node.names:
                    if _private(a.name):
                        yield node.lineno, f"imports {module}.{a.name}"
        elif isinstance(node, ast.Attribute):
            if node.attr.startswith("torchslim_"):
                yield node.lineno, f"reads attribute .{node.attr}"
            elif _private(node.attr):
                dotted = _dotted(node.value)
                head = dotted.split(".")[0] if dotted else ""
                full = (bound[head] + dotted[len(head) :]) if dotted and head in bound else None
                if full and foreign(full):
                    yield node.lineno, f"reads {full}.{node.attr}"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in {"getattr", "hasattr", "setattr", "delattr"} and len(node.args) >= 2:
                key = node.args[1]
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    if key.value.startswith("torchslim_") or key.value in LAYER_INTERNALS:
                        yield node.lineno, f'{node.func.id}(..., "{key.value}")'


def private_access_violations(src: Path, packages: Iterable[str] = CONSUMERS, top: str = "torchslim") -> list[str]:
    out = []
    for package in packages:
        for path in sorted((src / package).rglob("*.py")):
            rel = path.relative_to(src.parent)
            out += [f"{rel}:{line}: {what}" for line, what in sorted(set(private_access_in(path, src, top)))]
    return out


# ---------------------------------------------------------------- type: ignore

IGNORE = re.compile(r"#\s*type:\s*ignore(?P<codes>\[[^\]]*\])?(?P<rest>.*)$")


def type_ignores(path: Path) -> Iterator[tuple[int, str, bool]]:
    """(line, comment, has code and reason) for each ``# type: ignore`` comment (never inside strings)."""
    text = path.read_text(encoding="utf-8")
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type != tokenize.COMMENT:
            continue
        match = IGNORE.search(tok.string)
        if match:
            codes = (match.group("codes") or "[]")[1:-1].strip()
            ok = bool(codes) and re.match(r"\s*#\s*\S", match.group("rest")) is not None
            yield tok.start[0], tok.string, ok


def python_files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_file() and path.suffix == ".py":
            yield path
        elif path.is_dir():
            yield from sorted(p for p in path.rglob("*.py") if ".venv" not in p.parts)


def type_ignore_violations(paths: Iterable[Path]) -> list[str]:
    return [
        f"{path}:{line}: {comment.strip()} (needs # type: ignore[code]  # reason)"
        for path in python_files(paths)
        for line, comment, ok in type_ignores(path)
        if not ok
    ]


# ---------------------------------------------------------------- ruff and mypy


def _run(args: list[str], cwd: Path) -> tuple[int, str]:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr


def ruff(paths: Iterable[str] = RUFF_PATHS, *, cwd: Path = ROOT, config: Path | None = None) -> tuple[int, str]:
    """``ruff check`` then ``ruff format --check``: (0, output) when both pass."""
    extra = ["--config", str(config)] if config else []
    rc1, out1 = _run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", *extra, *paths], cwd)
    rc2, out2 = _run([sys.executable, "-m", "ruff", "format", "--check", *extra, *paths], cwd)
    return max(rc1, rc2), out1 + out2


def mypy(paths: Iterable[str] = (), *, cwd: Path = ROOT, config: Path | None = None) -> tuple[int, str]:
    """mypy with the project's configuration (``[tool.mypy]``: strict for torchslim.core)."""
    extra = ["--config-file", str(config)] if config else []
    return _run([sys.executable, "-m", "mypy", *extra, *paths], cwd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("check", choices=["layering", "private", "type-ignores", "ruff", "mypy"])
    parser.add_argument("paths", nargs="*")
    args = parser.parse_args(argv)
    src = ROOT / "src" / "torchslim"
    if args.check in {"ruff", "mypy"}:
        runner = ruff if args.check == "ruff" else mypy
        rc, output = runner(args.paths or (RUFF_PATHS if args.check == "ruff" else ()))
        print(output, end="")
        return rc
    if args.check == "layering":
        problems = layering_violations(src, ROOT / "docs" / "ARCHITECTURE.md")
    elif args.check == "private":
        problems = private_access_violations(src, args.paths or CONSUMERS)
    else:
        problems = type_ignore_violations([Path(p) for p in args.paths or ["src"]])
    print("\n".join(problems) if problems else f"{args.check}: ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
