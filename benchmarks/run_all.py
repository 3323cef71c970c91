"""Run every benchmark in turn (not part of `make test`): `python benchmarks/run_all.py [--quick]`.

`make bench` runs the full set, `make bench-quick` the ``--quick`` set (under 10 minutes on 2 idle
cores). Each script writes its JSON (with the harness header: date, machine, versions) + markdown
tables (+ plots) into benchmarks/results/; `python scripts/readme_tables.py` renders the README's
tables from those JSON files. They time models side by side, so run them alone on the machine: a
second heavy process skews the timings.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

SCRIPTS = ("deploy_speed.py", "backends.py", "quantization.py", "pruning.py", "int8_breakdown.py", "distillation.py")
FULL_ONLY = ("int8_ceiling.py",)
"""Not in the ``--quick`` set, which must stay under 10 minutes."""


def main() -> int:
    here = Path(__file__).resolve().parent
    extra = sys.argv[1:]
    failed = []
    started = time.perf_counter()
    for script in SCRIPTS + (() if "--quick" in extra else FULL_ONLY):
        print(f"== {script} {' '.join(extra)}", flush=True)
        t0 = time.perf_counter()
        if subprocess.run([sys.executable, str(here / script), *extra]).returncode != 0:
            failed.append(script)
        print(f"== {script}: {time.perf_counter() - t0:.0f} s", flush=True)
    print(f"== all benchmarks: {time.perf_counter() - started:.0f} s", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
