"""Running the command line in-process, for tests (the ``cli`` fixture and the safety tests)."""

from __future__ import annotations

import pytest


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the command line in-process; return (exit code, stdout, stderr)."""
    from torchslim.cli.main import main

    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
