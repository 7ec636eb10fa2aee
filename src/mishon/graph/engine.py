"""Where the graph's searches run: in this process, or as tasks on a Ray cluster.

The kNN searches and the Jaccard top-k are cut into shards (blocks of queries, groups of IVF
lists, blocks of users); `Engine.map` computes `fn(shared, shard)` for every shard and yields
the results in shard order. The local engine runs them one after the other in this process.
The Ray engine (`mishon graph --engine ray`) puts `shared` (the vectors, the index) into the
object store once and runs one task per shard, at most `2 x CPUs` at a time; each task reads
the shared arrays without copying them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from typing import Any, Protocol

from mishon.processes import ray_cluster


class Engine(Protocol):
    shards: int  # how many pieces a search is cut into

    def map(
        self, fn: Callable[[Any, Any], Any], shared: Any, shards: Sequence[Any]
    ) -> Iterator[Any]: ...


class LocalEngine:
    """Every shard in this process, in order."""

    shards = 1

    def map(
        self, fn: Callable[[Any, Any], Any], shared: Any, shards: Sequence[Any]
    ) -> Iterator[Any]:
        for shard in shards:
            yield fn(shared, shard)


class RayEngine:
    """Shards as Ray tasks of one CPU each; a local cluster is started (and stopped by
    `close`) without an `address`."""

    def __init__(self, address: str | None = None, shards: int | None = None) -> None:
        self._stack = ExitStack()
        self.ray = ray = self._stack.enter_context(ray_cluster(address))
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.shards = shards or max(2, cpus)
        self._in_flight = 2 * max(1, cpus)

    def map(
        self, fn: Callable[[Any, Any], Any], shared: Any, shards: Sequence[Any]
    ) -> Iterator[Any]:
        remote = self.ray.remote(num_cpus=1)(fn)
        shared_ref = self.ray.put(shared)
        pending: list[Any] = []
        upcoming = iter(shards)
        for shard in upcoming:
            pending.append(remote.remote(shared_ref, shard))
            if len(pending) >= self._in_flight:
                yield self.ray.get(pending.pop(0))
        for ref in pending:
            yield self.ray.get(ref)

    def close(self) -> None:
        self._stack.close()


def split_range(n: int, pieces: int, multiple: int = 1) -> list[range]:
    """0..n cut into at most `pieces` consecutive ranges whose sizes are multiples of
    `multiple` (the last excepted)."""
    size = -(-n // max(1, pieces))
    size = max(multiple, -(-size // multiple) * multiple)
    return [range(start, min(start + size, n)) for start in range(0, n, size)]
