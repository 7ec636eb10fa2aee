"""A real PostgreSQL server for tests: initdb and pg_ctl into a temporary folder, loopback only.

As root the server runs as the `postgres` user (initdb refuses root). Where PostgreSQL is not
installed the tests that need it are skipped, except under CI (`CI` set), where `.ci/run`
installs it: there a missing server is a failure, never a skip.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def postgres_bin() -> Path | None:
    """The folder of initdb and pg_ctl, newest version first; None if not installed."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent  # often a link into /usr/lib/postgresql/N/bin
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[4]))
    return Path(folders[-1]) if folders else None


def require_postgres() -> Path:
    folder = postgres_bin()
    if folder is None:
        message = "PostgreSQL (initdb, pg_ctl) is not installed"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: .ci/run installs it; a real component is not skipped in CI")
        pytest.skip(message)
    return folder


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextmanager
def postgres_server() -> Iterator[str]:
    """A fresh server on 127.0.0.1 with a database `mishon`; yields its URL; stopped after."""
    folder = require_postgres()
    root = Path(tempfile.mkdtemp(prefix="mishon-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    port = _free_port()
    user = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")

    def run(*command: str) -> None:
        done = subprocess.run(_as_server_user(list(command)), capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{command[0]} failed: {done.stdout}{done.stderr}")

    run(str(folder / "initdb"), "-D", str(data), "-A", "trust", "-U", user, "--no-sync")
    options = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=50"
    run(str(folder / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w",
        "start")  # fmt: skip
    try:
        url = f"postgresql://{user}@127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            createdb = [str(folder / "createdb"), "-h", "127.0.0.1", "-p", str(port)]
            done = subprocess.run(
                [*createdb, "-U", user, "mishon"],
                capture_output=True,
                text=True,
            )
            if done.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"createdb failed: {done.stderr}")
            time.sleep(0.2)
        yield f"{url}/mishon"
    finally:
        subprocess.run(
            _as_server_user([str(folder / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(url: str, name: str) -> str:
    """A new empty database `name` on the server of `url`; its URL."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{name}"')
        db.execute(f'CREATE DATABASE "{name}"')
    return url.rsplit("/", 1)[0] + f"/{name}"
