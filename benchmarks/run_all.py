"""Run every benchmark in turn (not part of `make test`): `python benchmarks/run_all.py [--quick]`.

Each script writes its JSON + markdown tables into benchmarks/results/. They train models and time
them side by side, so run them alone on the machine: a second heavy process skews the timings.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPTS = ("pruning.py", "quantization.py", "int8_breakdown.py", "distillation.py")


def main() -> int:
    here = Path(__file__).resolve().parent
    extra = sys.argv[1:]
    failed = []
    for script in SCRIPTS:
        print(f"== {script} {' '.join(extra)}", flush=True)
        if subprocess.run([sys.executable, str(here / script), *extra]).returncode != 0:
            failed.append(script)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
