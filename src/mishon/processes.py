"""Worker processes: local pools that end with the process that started them, and a Ray
cluster joined (or started) for the `--engine ray` paths.

A ProcessPoolExecutor's workers outlive a parent killed with SIGKILL (they wait on a queue
nobody writes to): `mishon extract` killed with -9 left two or three decoders running. On
Linux each worker asks the kernel to kill it when its parent dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any

from mishon.errors import MishonError

PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of `workers` spawned processes (no FFmpeg or torch state inherited) that end
    with this process, however it ends."""
    return ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_die_with_parent,
        initargs=(os.getpid(),),
    )


@contextmanager
def ray_cluster(address: str | None) -> Iterator[Any]:
    """The `ray` module, connected to the cluster at `address`, or to a local one started
    here (and stopped on leaving) when None; a clear error where Ray is not installed."""
    try:
        import ray
    except ImportError:
        raise MishonError(
            "the ray engine needs Ray: pip install 'mishon[ray]' (or 'ray[data]')"
        ) from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address=address, include_dashboard=False, log_to_driver=False, configure_logging=False
        )
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()
