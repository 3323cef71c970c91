"""The command line's one error boundary.

Every way a command can fail on the user's input ends the same way: one line on stderr that names
the parameter, file or layer at fault, exit code 2, no traceback (``--debug`` anywhere on the command
line, or ``TORCHSLIM_DEBUG=1``, raises the typed error instead, with its cause and traceback):

* click/typer usage errors (a bad option value, a missing or unknown option or command) become
  :class:`~torchslim.core.errors.UsageError`;
* every :class:`~torchslim.core.errors.TorchSlimError`;
* ``OSError`` while writing outputs (read-only folder, a parent that is a file) names the path.

Anything else is a bug in torchslim: one line saying so, exit code 1 (``--debug`` shows it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

import click
import typer

from torchslim.core.errors import OutputError, TorchSlimError, UsageError

USER_ERROR = 2
BUG = 1
DEBUG_FLAG = "--debug"


def one_line(text: str, *, limit: int = 2000) -> str:
    """`text` on one line, at most `limit` characters (a hostile input never prints megabytes)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


#: click's usage errors: typer >= 0.20 carries its own copy of click (its errors derive from TyperException)
USAGE_ERRORS: tuple[type[Exception], ...] = (click.exceptions.ClickException, typer.TyperException)
EXITS: tuple[type[Exception], ...] = (click.exceptions.Exit, typer.Exit)
ABORTS: tuple[type[BaseException], ...] = (click.exceptions.Abort, typer.Abort)


def usage_error(exc: Exception) -> UsageError:
    """The typed error for a click usage error; its message names the parameter or command."""
    format_message = getattr(exc, "format_message", None)
    message = format_message() if callable(format_message) else str(exc)
    ctx = getattr(exc, "ctx", None)
    where = f" (see `{ctx.command_path} --help`)" if ctx is not None and ctx.command_path else ""
    return UsageError(f"{message}{where}")


def os_error(exc: OSError) -> OutputError:
    """The typed error for an OSError: names the file(s) and the system's reason."""
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    where = " -> ".join(repr(n) for n in names) if names else "a file"
    return OutputError(f"cannot write {where}: {exc.strerror or exc}")


def split_debug(argv: Sequence[str]) -> tuple[list[str], bool]:
    """Remove ``--debug`` from `argv` (it may stand anywhere); say whether it was there."""
    args = list(argv)
    debug = DEBUG_FLAG in args or os.environ.get("TORCHSLIM_DEBUG", "") not in ("", "0")
    return [a for a in args if a != DEBUG_FLAG], debug


def _fail(error: BaseException, code: int) -> None:
    click.echo(f"error: {one_line(str(error))}", err=True)
    sys.exit(code)


def run_with_boundary(app: Callable[..., object], argv: Sequence[str] | None) -> None:
    """Run the typer `app` on `argv` (default: ``sys.argv[1:]``) inside the error boundary."""
    args, debug = split_debug(sys.argv[1:] if argv is None else argv)
    try:
        code = app(args=args, standalone_mode=False, prog_name="torchslim")
    except EXITS as exc:
        sys.exit(getattr(exc, "exit_code", 0))
    except ABORTS:
        click.echo("aborted", err=True)
        sys.exit(130)
    except USAGE_ERRORS as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help has been printed
            sys.exit(0)
        if debug:
            raise usage_error(exc) from exc
        _fail(usage_error(exc), USER_ERROR)
    except TorchSlimError as exc:
        if debug:
            raise
        _fail(exc, USER_ERROR)
    except OSError as exc:
        if debug:
            raise os_error(exc) from exc
        _fail(os_error(exc), USER_ERROR)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        if debug:
            raise
        _fail(
            RuntimeError(f"internal error (a bug in torchslim; rerun with --debug): {type(exc).__name__}: {exc}"),
            BUG,
        )
    if isinstance(code, int) and code:
        sys.exit(code)
