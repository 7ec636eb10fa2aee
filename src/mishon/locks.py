"""One writer per run directory: an advisory lock held while a process writes it.

`RUN/.lock` is locked with flock for as long as training writes the run. A second writer
(another `mishon train --resume`, a second torchrun) is refused with the holder's process id,
host and start time. The kernel releases the lock when its process ends however it ends, so a
lock file left by a killed process never blocks: the next writer takes it.
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from mishon.errors import MishonError

LOCK_FILE = ".lock"


@contextmanager
def exclusive_writer(folder: Path) -> Iterator[None]:
    """Hold `folder`'s lock while the block runs; a MishonError if another process holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = (folder / LOCK_FILE).open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise MishonError(
            f"{folder} is being written by {holder}: wait for it to finish or stop it "
            "(a lock left by a process that died is taken over by itself)"
        ) from None
    started = datetime.now(UTC).isoformat(timespec="seconds")
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()} on {socket.gethostname()} since {started}\n")
    handle.flush()
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
