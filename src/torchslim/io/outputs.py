"""Output paths checked before any work, and leftovers of killed saves cleaned up.

A command validates where it will write *before* it trains or compresses, so a path that cannot be
written (read-only folder, a parent that is a file, a folder where a file goes, an existing artifact
that may not be replaced) fails in a second, not after an hour of training.

Saves stage their files under hidden names beside the target (``.NAME.<random>`` directories,
``.NAME.<random>.tmp`` files, ``.NAME.old-<pid>`` during a swap). A killed process leaves them
behind; :func:`clean_leftovers` removes those of a target before the next save into the same
folder, and :func:`restore_swap` puts a previous artifact back when a kill fell between the two
renames of a swap.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from torchslim.core.errors import OutputError


def _nearest_existing(path: Path) -> Path:
    current = path
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def _check_parent(path: Path, param: str) -> None:
    """The folder that will hold `path` exists as a writable folder, or can be created in one."""
    parent = path.parent
    existing = _nearest_existing(parent)
    if not existing.is_dir():
        raise OutputError(f"{param} {str(path)!r}: {str(existing)!r} is a file, not a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{param} {str(path)!r}: folder {str(existing)!r} is not writable.")


def check_output_dir(directory: str | Path, *, param: str = "--out", overwrite: bool = True) -> Path:
    """Refuse an artifact directory that cannot be written or replaced; return it as a Path.

    Refused: a path that is a file, a non-empty directory that is not a torchslim artifact, an
    existing artifact when `overwrite` is False, a parent that is a file or not writable.
    """
    from torchslim.io.artifact import MANIFEST_FILE

    directory = Path(directory)
    if str(directory) in ("", "."):
        raise OutputError(f"{param} {str(directory)!r}: name a new folder for the artifact.")
    if directory.exists():
        if not directory.is_dir():
            raise OutputError(f"{param} {str(directory)!r} exists and is not a directory.")
        if any(directory.iterdir()) and not (directory / MANIFEST_FILE).exists():
            raise OutputError(
                f"{param} {str(directory)!r} is not empty and is not a torchslim artifact; refusing to overwrite it."
            )
        if not overwrite:
            how = "pass --force to replace it" if param.startswith("--") else "overwrite=False"
            raise OutputError(f"{param} {str(directory)!r}: an artifact is already there ({how}).")
    _check_parent(directory, param)
    return directory


def check_output_file(path: str | Path, *, param: str) -> Path:
    """Refuse a file output that is a folder or whose folder cannot be written; return it as a Path."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{param} {str(path)!r} is a folder; name a file.")
    if path.exists() and not os.access(path.parent, os.W_OK | os.X_OK):
        raise OutputError(f"{param} {str(path)!r}: folder {str(path.parent)!r} is not writable.")
    _check_parent(path, param)
    return path


def _staging_pattern(name: str) -> re.Pattern[str]:
    # '.NAME.stage-PID-xxxxxxxx' (folders), '.NAME.tmp-PID-xxxxxxxx.tmp' (files), '.NAME.old-PID' (swap
    # backups); and the older pid-less tempfile names '.NAME.xxxxxxxx' and '.NAME.xxxxxxxx.tmp'
    return re.compile(
        rf"^\.{re.escape(name)}\.((?P<kind>stage|tmp|old)-(?P<pid>\d+)(-[a-z0-9_]+)?(\.tmp)?|[a-z0-9_]{{8}}(\.tmp)?)$"
    )


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _leftover(entry: Path, pattern: re.Pattern[str]) -> re.Match[str] | None:
    """The name match when `entry` is staging of `pattern`'s target written by a process that is gone."""
    match = pattern.match(entry.name)
    if match is None or (match["pid"] is not None and _pid_alive(int(match["pid"]))):
        return None
    return match


def restore_swap(target: str | Path) -> Path | None:
    """If a kill fell between the renames of a swap (`target` gone, ``.NAME.old-PID`` there), put it back."""
    target = Path(target)
    if target.exists() or not target.parent.is_dir():
        return None
    pattern = _staging_pattern(target.name)
    for entry in sorted(target.parent.iterdir()):
        match = _leftover(entry, pattern)
        if match is not None and match["kind"] == "old" and entry.is_dir():
            os.replace(entry, target)
            return target
    return None


def clean_leftovers(target: str | Path) -> list[Path]:
    """Remove staging folders, ``.tmp`` files and swap backups of `target` left by killed processes.

    A swap backup is first restored when `target` is missing (:func:`restore_swap`). Entries of a
    process that is still running (its pid in the name) are kept. Returns what was removed.
    """
    target = Path(target)
    if not target.parent.is_dir():
        return []
    restore_swap(target)
    pattern = _staging_pattern(target.name)
    removed: list[Path] = []
    for entry in sorted(target.parent.iterdir()):
        if _leftover(entry, pattern) is None:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed
