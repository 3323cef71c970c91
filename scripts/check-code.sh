#!/usr/bin/env bash
# Static checks that `make test` runs before pytest (with CHECKS=1): ruff lint and format check,
# mypy over src/ (strict for torchslim.core, see [tool.mypy] in pyproject.toml) and no
# `# type: ignore` without an error code and a reason. Every check runs; the script fails if any did.
# The layering and private-access checks are pytest tests (tests/test_layering.py).
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
status=0
run() {
    echo "== $*"
    "$@" || status=1
}
run "$PY" -m ruff check --output-format concise src tests scripts benchmarks
run "$PY" -m ruff format --check src tests scripts benchmarks
run "$PY" -m mypy
run "$PY" scripts/codechecks.py type-ignores src tests scripts benchmarks
if [ "$status" -ne 0 ]; then
    echo "check-code: FAILED (fix the findings above; run 'make test CHECKS=0' to skip)" >&2
fi
exit "$status"
