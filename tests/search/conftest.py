"""Fixtures of the search tests: this folder on sys.path (for search_toys and the worker script),
a trained digits CNN, and a real PostgreSQL server on loopback (initdb + pg_ctl in a temporary
directory, a free port, stopped at teardown)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_user(argv: list[str]) -> list[str]:
    """initdb refuses to run as root: run the server as the 'postgres' (or 'nobody') user then."""
    if os.geteuid() != 0:
        return argv
    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        return ["runuser", "-u", user, "--", *argv]
    pytest.skip("running as root with neither a 'postgres' nor a 'nobody' user to start PostgreSQL as")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server of our own on 127.0.0.1 (trust auth, database 'optuna'); skipped, with
    the reason, only when no server binary exists (scripts/get-postgres.sh installs one)."""
    pytest.importorskip("psycopg2")
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server binary (pg_ctl/initdb); run scripts/get-postgres.sh (make test does)")
    root = Path(tempfile.mkdtemp(prefix="torchslim-pg-"))
    os.chmod(root, 0o777)
    data, port = root / "data", _free_port()
    if os.geteuid() == 0:
        user = "postgres" if _has_user("postgres") else "nobody"
        shutil.chown(root, user=user)
    subprocess.run(
        _as_user([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "torchslim", "--no-sync"]),
        check=True,
        capture_output=True,
    )
    options = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off"
    start = [str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"]
    subprocess.run(_as_user(start), check=True, capture_output=True)
    try:
        _create_database(port)
        yield f"postgresql://torchslim@127.0.0.1:{port}/optuna"
    finally:
        subprocess.run(_as_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]), check=False)
        shutil.rmtree(root, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _create_database(port: int) -> None:
    import psycopg2

    deadline = time.monotonic() + 30
    while True:
        try:
            conn = psycopg2.connect(host="127.0.0.1", port=port, user="torchslim", dbname="postgres")
            break
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE optuna")
    conn.close()


@pytest.fixture(scope="session")
def digits_cnn():
    """(trained DigitsCNN, digits splits), trained once per session."""
    import torch
    from search_toys import digits_splits, trained_digits_cnn

    torch.set_num_threads(1)
    splits = digits_splits()
    return trained_digits_cnn(splits), splits
