"""Kept-alive connections shared out evenly among the processes of `mishon serve --workers N`.

The worker processes share one listening socket: the kernel gives each new connection to
whichever process accepts it first, and a kept-alive connection then stays with that process
for good. 16 clients split 11 / 5 between two workers (measured): the eleven waited for each
other about 2.4 times as long as the five, and the second core idled while the first queued.

Each worker writes its count of open connections, beside its pid, into a slot of a small
shared file (the state folder, one file per port). A worker holding more than its share (the
open connections of the live workers over their number, rounded up) answers its next request
with `Connection: close`, so that client opens a new connection, which the kernel gives to
either process. Only a worker above its share closes, so each reconnection can only even the
split out, and a balanced service closes nothing.
"""

from __future__ import annotations

import atexit
import fcntl
import math
import mmap
import os
from pathlib import Path

import numpy as np

SLOTS = 256  # workers that may share a port at once (a SIGHUP briefly doubles them)


class ConnectionBoard:
    """This process's slot on the shared board of open connections per worker process."""

    def __init__(self, path: Path, slots: int = SLOTS) -> None:
        """Claim a free slot (empty, or left by a process that is gone) in the board at `path`,
        created if missing."""
        self.path = path
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            size = slots * 2 * 8  # a pid and a count per slot, 64-bit each
            if os.fstat(descriptor).st_size < size:
                os.ftruncate(descriptor, size)
            self._map = mmap.mmap(descriptor, size)
            fcntl.lockf(descriptor, fcntl.LOCK_EX)  # one claim at a time, across processes
            try:
                self._slots = np.frombuffer(self._map, dtype=np.int64).reshape(slots, 2)
                free = [s for s, pid in enumerate(self._slots[:, 0].tolist()) if not _alive(pid)]
                if not free:
                    raise RuntimeError(f"{path}: all {slots} slots are taken by live processes")
                self.slot = free[0]
                self._slots[self.slot] = (os.getpid(), 0)
            finally:
                fcntl.lockf(descriptor, fcntl.LOCK_UN)
        finally:
            os.close(descriptor)  # the mapping stays valid
        self.open = 0  # this process's open connections
        self.leaving = 0  # of them, those to be closed after their answer
        atexit.register(self.leave)

    def opened(self) -> None:
        """A connection of this process opened."""
        self.open += 1
        self._publish()

    def closed(self, leaving: bool = False) -> None:
        """A connection of this process closed (`leaving`: one `let_go` chose)."""
        self.open -= 1
        self.leaving -= int(leaving)
        self._publish()

    def let_go(self) -> bool:
        """Whether one connection should close after its answer: this process holds more open
        connections than its share (those of every live worker on the board over their number,
        rounded up), not counting those already let go, so that the requests judged before
        they close do not let more go than the excess."""
        total, live = 0, 0
        me = os.getpid()
        for pid, count in self._slots.tolist():
            if pid and (pid == me or _alive(pid)):
                total, live = total + count, live + 1
        if self.open - self.leaving <= math.ceil(total / max(live, 1)):
            return False
        self.leaving += 1
        return True

    def _publish(self) -> None:
        # the connections let go still count in the total: their clients come back at once
        self._slots[self.slot, 1] = self.open

    def leave(self) -> None:
        """Free the slot (at exit; a process killed outright leaves it to the next claimant)."""
        if self._slots[self.slot, 0] == os.getpid():
            self._slots[self.slot] = (0, 0)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def board_path(state_dir: Path, port: int) -> Path:
    """The board of the workers serving `port` (one service per port on a host)."""
    return state_dir / f"connections-{port}.board"
