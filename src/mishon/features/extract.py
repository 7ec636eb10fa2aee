"""The extraction pipeline: posts -> media decoding (worker processes) -> extractors -> store.

Posts are processed in fixed batches of `batch_size` consecutive posts. A batch is the unit of
work and of resumption: on a rerun, every batch with a pending post is recomputed whole, with
the same composition as in an uninterrupted run, so the stored arrays come out identical.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mishon.config import ExtractorSettings, ExtractSettings
from mishon.data.store import read_posts
from mishon.features.base import Extractor, Modality
from mishon.features.jobs import (
    DecodedPost,
    DecodeRequest,
    Encoded,
    Jobs,
    decode_post,
    encode_batch,
)
from mishon.features.ray_engine import ray_batches
from mishon.features.registry import create_extractor, field_of, input_field
from mishon.features.store import FAILED, PENDING, FeatureStore, StoreSpec, modality_dir
from mishon.processes import worker_pool

log = logging.getLogger("mishon.features")

ProgressFn = Callable[[int], None]


@dataclass
class ModalityReport:
    extractor: str
    units: int
    dim: int
    computed: int = 0
    reused: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


@dataclass
class ExtractReport:
    modalities: dict[str, ModalityReport] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    posts: int = 0


def _video_paths(dataset: Path, posts: pd.DataFrame) -> tuple[list[str | None], dict[int, str]]:
    """Absolute video paths (None where a post has none) and rows whose path is unsafe."""
    if "video" not in posts:
        return [None] * len(posts), {}
    root = dataset.resolve()
    paths: list[str | None] = []
    unsafe: dict[int, str] = {}
    for row, video in enumerate(posts["video"].tolist()):
        if not isinstance(video, str) or not video:
            paths.append(None)
            continue
        target = (root / video).resolve()
        link = root / video
        if root not in target.parents and not link.is_symlink():
            unsafe[row] = f"video path {video!r} leaves the dataset"
            paths.append(None)
            continue
        paths.append(str(link))
    return paths, unsafe


TEXT_FIELDS = ("caption", "sound")  # post fields an extractor may read besides the video


def _texts(posts: pd.DataFrame) -> dict[str, list[str | None]]:
    """Each text field of the posts, None where a post has none."""
    return {
        name: [v if isinstance(v, str) and v.strip() else None for v in posts[name].tolist()]
        if name in posts
        else [None] * len(posts)
        for name in TEXT_FIELDS
    }


class _Decoder:
    """Decodes batches ahead of the one being encoded, in worker processes when asked."""

    def __init__(self, paths: list[str | None], request: DecodeRequest, workers: int) -> None:
        self.paths = paths
        self.request = request
        self.pool: Executor | None = None
        if workers > 0:
            self.pool = worker_pool(workers)

    def submit(self, rows: range) -> list[Future[DecodedPost]] | list[DecodedPost]:
        if self.pool is None:
            return [decode_post(self.paths[r], self.request) for r in rows]
        return [self.pool.submit(decode_post, self.paths[r], self.request) for r in rows]

    @staticmethod
    def collect(handles: list[Future[DecodedPost]] | list[DecodedPost]) -> list[DecodedPost]:
        return [h.result() if isinstance(h, Future) else h for h in handles]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


def extract_features(
    dataset: Path,
    settings: ExtractSettings,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    on_total: Callable[[int], None] | None = None,
    extractors: dict[Modality, Extractor] | None = None,
) -> ExtractReport:
    """Extract the configured modalities of every post in `dataset` into DATASET/features/.

    `extractors` replaces the configured ones (tests pass small ones).
    """
    started = time.perf_counter()
    posts = read_posts(dataset)
    post_ids = posts["post_id"].astype(str).tolist()
    paths, unsafe = _video_paths(dataset, posts)
    texts = _texts(posts)
    report = ExtractReport(posts=len(posts))
    present = {name: any(v is not None for v in values) for name, values in texts.items()}
    present["video"] = any(p is not None for p in paths) or bool(unsafe)

    active: dict[Modality, Extractor] = {}
    for modality in Modality:
        spec = getattr(settings, modality.value)
        if spec.name is None:
            report.skipped[modality] = "turned off"
            continue
        if (
            modality == Modality.ACOUSTIC
            and spec.name != "sound"
            and not present["video"]
            and present["sound"]
        ):
            # a platform's export: no audio track, but the sound each post uses is named
            spec = ExtractorSettings(name="sound", units=1)
            report.notes.append(
                f"acoustic: no post has a video, so the sound's identity is used "
                f"(extract.acoustic.name=sound) instead of {settings.acoustic.name}"
            )
        given = (extractors or {}).get(modality)
        field = input_field(given, modality) if given else field_of(spec.name, modality)
        if not present[field]:
            report.skipped[modality] = f"no post has a {field}"
            continue
        active[modality] = given or create_extractor(modality, spec, settings)

    stores = {
        m: FeatureStore.create_or_resume(
            modality_dir(dataset, m.value),
            StoreSpec(m.value, e.name, e.model_id, e.units, e.dim),
            post_ids,
            overwrite,
        )
        for m, e in active.items()
    }
    if settings.retry_failed:
        for store in stores.values():
            store.status[np.asarray(store.status) == FAILED] = PENDING
            store.status.flush()
    for m, e in active.items():
        report.modalities[m] = ModalityReport(e.name, e.units, e.dim)

    request = DecodeRequest.for_extractors(
        active.get(Modality.VISUAL), active.get(Modality.ACOUSTIC), settings.max_audio_s
    )
    batches = [
        range(s, min(s + settings.batch_size, len(posts)))
        for s in range(0, len(posts), settings.batch_size)
    ]
    work: list[tuple[range, list[Modality]]] = []
    for rows in batches:
        todo = [
            m
            for m, store in stores.items()
            if (np.asarray(store.status[rows.start : rows.stop]) == PENDING).any()
        ]
        for m in stores:
            if m not in todo:
                report.modalities[m].reused += len(rows)
        if todo:
            work.append((rows, todo))
    if on_total is not None:
        on_total(sum(len(rows) for rows, _ in work))

    jobs = Jobs(work, active, paths, texts, unsafe, request)
    results = (
        ray_batches(jobs, settings)
        if settings.engine == "ray"
        else _local_batches(jobs, settings.workers)
    )
    left = {rows.start: len(todo) for rows, todo in work}
    try:
        for rows, modality, (values, mask, failed) in results:
            stores[modality].write(rows.start, values, mask, failed)
            report.modalities[modality].computed += len(rows)
            left[rows.start] -= 1
            if progress is not None and not left[rows.start]:
                progress(len(rows))
    finally:
        results.close()  # stops the workers (or the Ray job) on an error too
        for m, store in stores.items():
            store.finish()
            report.modalities[m].counts = store.counts()
            report.modalities[m].failures = store.failures()
    report.seconds = time.perf_counter() - started
    log.info(
        "extracted %s of %d posts in %.1f s: %s",
        dataset, report.posts, report.seconds,
        ", ".join(f"{m} {r.extractor} ({r.computed} computed, {r.reused} reused)"
                  for m, r in report.modalities.items()),
    )  # fmt: skip
    return report


def _local_batches(
    jobs: Jobs, workers: int
) -> Generator[tuple[range, Modality, Encoded], None, None]:
    """The single-process engine: decoding in `workers` processes a batch or two ahead,
    extractors in this process."""
    decoder = _Decoder(jobs.paths, jobs.request, workers if jobs.needs_media else 0)
    try:
        for rows, todo, handles in _prefetched(jobs, decoder, depth=2):
            decoded = decoder.collect(handles) if handles is not None else None
            for modality in todo:
                extractor = jobs.extractors[modality]
                yield (
                    rows,
                    modality,
                    encode_batch(extractor, modality, rows, decoded, jobs.texts, jobs.unsafe),
                )
    finally:
        decoder.close()


def _prefetched(
    jobs: Jobs, decoder: _Decoder, depth: int
) -> Iterator[tuple[range, list[Modality], list[Future[DecodedPost]] | list[DecodedPost] | None]]:
    """Yield batches with their decoding started up to `depth` batches ahead."""
    queue: deque[
        tuple[range, list[Modality], list[Future[DecodedPost]] | list[DecodedPost] | None]
    ] = deque()
    upcoming = iter(jobs.work)

    def fill() -> None:
        while len(queue) < depth:
            item = next(upcoming, None)
            if item is None:
                return
            rows, todo = item
            queue.append((rows, todo, decoder.submit(rows) if jobs.reads_video(todo) else None))

    fill()
    while queue:
        item = queue.popleft()
        fill()
        yield item
