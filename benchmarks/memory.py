"""Peak resident memory of the running process, sampled (shared by the benchmarks)."""

from __future__ import annotations

import os
import resource
import threading
import time


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def private_mb() -> float:
    """Resident memory less its shared pages (file mappings, shared memory such as Ray's
    object store): what this process alone holds."""
    with open("/proc/self/statm") as handle:
        fields = handle.read().split()
    return (int(fields[1]) - int(fields[2])) * os.sysconf("SC_PAGE_SIZE") / 2**20


def lifetime_peak_mb() -> float:
    """The largest resident memory this process has had, as the kernel counts it: exact, and no
    sampling thread to take the interpreter's lock from what is being timed."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


class PeakRss:
    """Samples this process's resident memory every 5 ms; `take()` returns and resets the peak."""

    def __init__(self) -> None:
        self.peak = rss_mb()
        self.private_peak = private_mb()
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_mb())
            self.private_peak = max(self.private_peak, private_mb())
            time.sleep(0.005)

    def take(self) -> float:
        peak, self.peak = max(self.peak, rss_mb()), rss_mb()
        return peak


class PeakWorkerRss:
    """The largest resident memory of any one process whose command line starts with
    `prefix` (Ray names its workers `ray::...`), sampled every 200 ms."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.encode()
        self.peak = 0.0
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        while self.running:
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as handle:
                        if not handle.read().startswith(self.prefix):
                            continue
                    with open(f"/proc/{pid}/statm") as handle:
                        rss = int(handle.read().split()[1]) * page / 2**20
                except OSError:  # the process ended meanwhile
                    continue
                self.peak = max(self.peak, rss)
            time.sleep(0.2)

    def stop(self) -> float:
        self.running = False
        return self.peak
