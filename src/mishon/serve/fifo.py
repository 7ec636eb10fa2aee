"""A first-come, first-served semaphore for threads.

`threading.Semaphore` is not fair: a thread that arrives as a slot frees up takes it ahead of
the threads already waiting, and the woken waiter queues again at the back. Under a steady
load (each answer brings the client's next request at once) some requests lost that race
several times over and waited two or three turns. Here a freed slot goes straight to the
longest waiting thread, so a request waits for those ahead of it only.
"""

from __future__ import annotations

import threading
from collections import deque
from types import TracebackType


class FifoSemaphore:
    """At most `slots` holders at once; waiters get a slot in the order they asked."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"a semaphore needs at least one slot, got {slots}")
        self._free = slots
        self._lock = threading.Lock()
        self._waiting: deque[threading.Event] = deque()

    def acquire(self) -> None:
        with self._lock:
            if self._free and not self._waiting:
                self._free -= 1
                return
            turn = threading.Event()
            self._waiting.append(turn)
        turn.wait()  # `release` hands its slot over: nobody can take it in between

    def release(self) -> None:
        with self._lock:
            if self._waiting:
                self._waiting.popleft().set()
            else:
                self._free += 1

    def __enter__(self) -> FifoSemaphore:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.release()
