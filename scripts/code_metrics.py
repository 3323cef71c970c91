"""Counts that say how livable a source tree is (the before/after numbers of a redesign).

Usage: ``python scripts/code_metrics.py [ROOT]`` (ROOT: a checkout, default this one). Counts over
``ROOT/src/torchslim``:

* source files over 500 lines;
* functions over 60 lines (``end_lineno - lineno + 1`` of the ``def``), raw and without the ones that
  carry a ``# long: <reason>`` comment on the line after the ``def``;
* ``# type: ignore`` comments, and those without an error code and a reason;
* cross-package private accesses (the rule of tests/test_layering.py for measure/, io/, report/ and
  deploy/; and, for every package, imports or reads of another package's ``_names``);
* places that build a ``TrainConfig(`` from copied fields (an argument of the form ``config.x``);
* the number of fields of the largest config dataclass.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import codechecks  # noqa: E402  (the sibling module, found through the path set above)

MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 60


def long_files(files: list[Path]) -> list[tuple[Path, int]]:
    counted = [(path, len(path.read_text(encoding="utf-8").splitlines())) for path in files]
    return [(path, n) for path, n in counted if n > MAX_FILE_LINES]


def long_functions(path: Path) -> Iterator[tuple[str, int, bool]]:
    """(qualified name, lines, has a ``# long:`` reason) of each function over the limit."""
    lines = path.read_text(encoding="utf-8").splitlines()
    tree = ast.parse("\n".join(lines), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno is not None:
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                # the comment may sit after a signature spread over several lines, before the body
                between = lines[node.lineno : node.body[0].lineno - 1] or lines[node.lineno : node.lineno + 1]
                reason = any(line.strip().startswith("# long:") for line in between)
                yield f"{path.stem}.{node.name}:{node.lineno}", length, reason


ENTRY_POINTS = ("cli", "cli.py", "demo.py", "api.py")
"""Where a TrainConfig built from the caller's own arguments (command-line flags) is not a copy."""


def _train_config_args(call: ast.Call) -> list[ast.expr] | None:
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return [*call.args, *(k.value for k in call.keywords)] if name == "TrainConfig" else None


def _copied(value: ast.expr) -> bool:
    """A value taken from somewhere else: a variable or attribute, not a literal or an UPPER_CASE constant."""
    names = [n.id for n in ast.walk(value) if isinstance(n, ast.Name)]
    return any(not name.isupper() for name in names)


def _from_config(value: ast.expr) -> bool:
    return (
        isinstance(value, ast.Attribute)
        and isinstance(value.value, ast.Name)
        and value.value.id.lower().endswith(("config", "cfg"))
    )


def train_config_copies(files: list[Path], src: Path) -> tuple[list[str], list[str]]:
    """(strict, broad) places that build a TrainConfig from copied fields.

    strict: a ``TrainConfig(`` call with an argument ``config.x``. broad: also one whose arguments are
    variables (``epochs=epochs`` in a helper the technique passes its fields to, ``**fields`` in a
    mixin of copied training fields), outside the entry points (cli/, cli.py, demo.py, api.py).
    """
    strict, broad = [], []
    for path in files:
        rel = path.relative_to(src)
        entry = rel.parts[0] in ENTRY_POINTS or rel.name in ENTRY_POINTS
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            args = _train_config_args(node) if isinstance(node, ast.Call) else None
            if not args:
                continue
            if any(_from_config(v) for v in args):
                strict.append(f"{rel}:{node.lineno}")
            if not entry and any(_copied(v) for v in args):
                broad.append(f"{rel}:{node.lineno}")
    return strict, broad


def _is_classvar(annotation: ast.expr) -> bool:
    text = ast.unparse(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar", "'ClassVar", '"ClassVar'))


def config_fields(files: list[Path]) -> dict[str, int]:
    """Fields (own and inherited from classes in the tree) of every ``*Config`` / dataclass class."""
    classes: dict[str, ast.ClassDef] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                classes.setdefault(node.name, node)

    def fields(name: str, seen: frozenset[str] = frozenset()) -> list[str]:
        node = classes.get(name)
        if node is None or name in seen:
            return []
        inherited = [f for base in node.bases if isinstance(base, ast.Name) for f in fields(base.id, seen | {name})]
        own = [
            s.target.id
            for s in node.body
            if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name) and not _is_classvar(s.annotation)
        ]
        return list(dict.fromkeys([*inherited, *own]))

    def is_config(node: ast.ClassDef) -> bool:
        decorated = any("dataclass" in ast.unparse(d) for d in node.decorator_list)
        return decorated and (node.name.endswith("Config") or node.name in _config_subclasses(classes))

    return {name: len(fields(name)) for name, node in classes.items() if is_config(node)}


def _config_subclasses(classes: dict[str, ast.ClassDef]) -> set[str]:
    found = {"TechniqueConfig"}
    changed = True
    while changed:
        changed = False
        for name, node in classes.items():
            if name not in found and any(isinstance(b, ast.Name) and b.id in found for b in node.bases):
                found.add(name)
                changed = True
    return found


def metrics(root: Path) -> list[str]:
    src = root / "src" / "torchslim"
    files = sorted(src.rglob("*.py"))
    big = long_files(files)
    functions = [f for path in files for f in long_functions(path)]
    ignores = [(path, line, ok) for path in files for line, _, ok in codechecks.type_ignores(path)]
    consumers = [p for p in codechecks.CONSUMERS if (src / p).is_dir()]
    private = codechecks.private_access_violations(src, consumers)
    packages = [p.name for p in sorted(src.iterdir()) if p.is_dir() and not p.name.startswith("__")]
    underscored = [
        v for v in codechecks.private_access_violations(src, packages) if "imports" in v or ": reads torchslim." in v
    ]
    copies, copies_broad = train_config_copies(files, src)
    sizes = config_fields(files)
    largest = max(sizes.items(), key=lambda kv: kv[1]) if sizes else ("-", 0)
    lines = [
        f"tree: {root}",
        f"source files over {MAX_FILE_LINES} lines: {len(big)}"
        + "".join(f"\n    {p.relative_to(src)} {n}" for p, n in sorted(big, key=lambda x: -x[1])),
        f"functions over {MAX_FUNCTION_LINES} lines without '# long:' reason: {sum(not r for _, _, r in functions)}"
        f" (raw: {len(functions)})"
        + "".join(
            f"\n    {name} {n}{' (long:)' if r else ''}" for name, n, r in sorted(functions, key=lambda x: -x[1])
        ),
        f"type: ignore comments: {len(ignores)} (without code and reason: {sum(not ok for *_, ok in ignores)})",
        f"cross-package private accesses (measure/io/report/deploy, tests/test_layering.py rule): {len(private)}"
        + "".join(f"\n    {v}" for v in private),
        f"imports/reads of another package's _private names (every package): {len(underscored)}"
        + "".join(f"\n    {v}" for v in underscored),
        f"TrainConfig( built from copied config.x fields: {len(copies)}" + "".join(f"\n    {c}" for c in copies),
        f"TrainConfig( built from non-literal fields outside cli/demo/api (copies passed on): {len(copies_broad)}"
        + "".join(f"\n    {c}" for c in copies_broad),
        f"fields of the largest config dataclass: {largest[1]} ({largest[0]})",
    ]
    return lines


if __name__ == "__main__":
    print("\n".join(metrics(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else codechecks.ROOT)))
