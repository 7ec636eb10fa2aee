"""The Ray engine of `mishon extract` (`--engine ray`): the same batches, extractors and
feature store as the local engine, spread over a Ray cluster.

Each batch's videos are decoded by a Ray task (one CPU each, anywhere in the cluster); each
extractor runs in a pool of `ray_actors` actors (a GPU each where the cluster has GPUs) that
receive the decoded batch straight from the object store. The driver alone writes the store,
batch by batch as results arrive, so an interrupted cluster job resumes like a local one.
Ray core (tasks and actors) rather than Ray Data: a decoded batch is ragged (clips of any
length, per-post errors) and travels as one object, without conversion to Arrow blocks.
Without `ray_address` a local cluster is started, and stopped at the end.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

from mishon.config import ExtractSettings
from mishon.features.base import Extractor, Modality
from mishon.features.jobs import (
    DecodedPost,
    DecodeRequest,
    Encoded,
    Jobs,
    decode_post,
    encode_batch,
)
from mishon.processes import ray_cluster


def _decode_rows(paths: list[str | None], request: DecodeRequest) -> list[DecodedPost]:
    return [decode_post(path, request) for path in paths]


class ExtractorActor:
    """One extractor, loaded once, encoding batches of one modality."""

    def __init__(self, extractor: Extractor, modality: Modality, threads: int | None) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.extractor = extractor
        self.modality = modality

    def encode(
        self,
        decoded: list[DecodedPost] | None,
        texts: dict[str, list[str | None]],
        unsafe: dict[int, str],
    ) -> Encoded:
        rows = range(len(next(iter(texts.values()))))  # the batch's posts, by offset
        return encode_batch(self.extractor, self.modality, rows, decoded, texts, unsafe)


def ray_batches(
    jobs: Jobs, settings: ExtractSettings
) -> Generator[tuple[range, Modality, Encoded], None, None]:
    """Yield (rows, modality, encoded) as the cluster finishes them, in any order."""
    with ray_cluster(settings.ray_address) as ray:
        pools = _actor_pools(ray, jobs.extractors, settings.ray_actors)
        try:
            decode = ray.remote(num_cpus=1)(_decode_rows)
            in_flight: dict[Any, tuple[range, Modality]] = {}
            # bounds the decoded batches held in the object store
            limit = 2 * sum(len(pool) for pool in pools.values()) + 2
            for number, (rows, todo) in enumerate(jobs.work):
                decoded = None
                if jobs.reads_video(todo):
                    decoded = decode.remote([jobs.paths[r] for r in rows], jobs.request)
                texts = {
                    name: values[rows.start : rows.stop] for name, values in jobs.texts.items()
                }
                unsafe = {r - rows.start: e for r, e in jobs.unsafe.items() if r in rows}
                for modality in todo:
                    actor = pools[modality][number % len(pools[modality])]
                    in_flight[actor.encode.remote(decoded, texts, unsafe)] = (rows, modality)
                while len(in_flight) >= limit:
                    yield from _finished(ray, in_flight)
            while in_flight:
                yield from _finished(ray, in_flight)
        finally:
            for pool in pools.values():
                for actor in pool:
                    ray.kill(actor)


def _actor_pools(
    ray: Any, extractors: dict[Modality, Extractor], size: int
) -> dict[Modality, list[Any]]:
    """`size` actors per extractor, each loaded from one copy in the object store."""
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    # Actors reserve no CPU: three modalities' actors and the decoding tasks must fit on a
    # two-core machine; each actor's torch threads are what the node has.
    actor_class = ray.remote(num_cpus=0, num_gpus=gpus)(ExtractorActor)
    pools = {}
    for modality, extractor in extractors.items():
        shared = ray.put(extractor)
        pools[modality] = [
            actor_class.remote(shared, modality, os.cpu_count()) for _ in range(size)
        ]
    return pools


def _finished(
    ray: Any, in_flight: dict[Any, tuple[range, Modality]]
) -> Generator[tuple[range, Modality, Encoded], None, None]:
    done, _ = ray.wait(list(in_flight), num_returns=1)
    for ref in done:
        rows, modality = in_flight.pop(ref)
        yield rows, modality, ray.get(ref)
