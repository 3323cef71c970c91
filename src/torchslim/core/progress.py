"""Phase lines: what a long run is doing now and how long each part took, on stderr.

A compression run has phases that take from seconds to minutes (each recipe step, calibration,
export to the runtime, timing, accuracy over the test split). :func:`phase` prints one line when a
phase starts and one when it ends, with its wall time::

    > step 2/3 quantize ...
    < step 2/3 quantize: 35.2 s

Plain lines instead of a live display, so a phase can hold a training progress bar (rich allows one
live display at a time) and a log file reads the same as a terminal. Hidden when `quiet`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


@contextmanager
def phase(label: str, *, quiet: bool, stream: TextIO | None = None) -> Iterator[None]:
    """Print ``> label ...`` now and ``< label: S s`` (or ``failed after S s``) when the block ends."""
    out = sys.stderr if stream is None else stream
    if not quiet:
        print(f"> {label} ...", file=out, flush=True)
    started = time.perf_counter()
    ok = False
    try:
        yield
        ok = True
    finally:
        if not quiet:
            took = time.perf_counter() - started
            print(f"< {label}: {took:.1f} s" if ok else f"< {label}: failed after {took:.1f} s", file=out, flush=True)
