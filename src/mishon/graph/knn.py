"""k nearest neighbours by inner product (cosine on unit vectors).

- exact (up to `exact_max` vectors): blocks of queries times all vectors, then topk;
- ivf (beyond): an inverted file searched with dense matrix products. k-means (faiss, on a
  seeded sample) cuts the vectors into sqrt(N) lists; every vector probes its `nprobe` nearest
  lists; then, list by list, all the queries that probe it are multiplied by its members in one
  BLAS call, and each query's running top-k is updated. Same candidates, hence same recall, as
  faiss's IVF-Flat, but several times faster on CPU than its per-query scans;
- hnsw: faiss's HNSW graph index.
Queries run in blocks, so besides the vectors the memory is bounded (EXACT_BLOCK_FLOATS per
product); no N x N matrix is ever formed. Absent vectors (present=False) take part in nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import faiss
import numpy as np

from mishon.graph.engine import Engine, LocalEngine, split_range

ProgressFn = Callable[[int], None]
# Exact search multiplies a block of queries by all vectors: at most this many floats at once.
EXACT_BLOCK_FLOATS = 32 * 2**20


def _exact_searcher(
    data: np.ndarray, want: int
) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Exact top-`want` inner products of a block of queries against `data`, via torch matmul
    (several times faster than faiss's flat index here) and topk."""
    import torch

    matrix = torch.from_numpy(data)

    def search(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            scores = torch.from_numpy(block) @ matrix.T
            values, indices = scores.topk(want, dim=1)
        return values.numpy(), indices.numpy().astype(np.int64)

    return search


@dataclass(frozen=True)
class KnnResult:
    """For each vector, its neighbours (-1 = none) and similarities, best first."""

    neighbours: np.ndarray  # int64 [N, k]
    similarities: np.ndarray  # float32 [N, k]
    method: str
    nprobe: int | None = None  # IVF: lists searched
    recall: float | None = None  # IVF: recall against exact search on sampled queries

    def describe(self) -> dict[str, object]:
        info: dict[str, object] = {"method": self.method}
        if self.nprobe is not None:
            info["nprobe"] = self.nprobe
        if self.recall is not None:
            info["sampled_recall"] = round(self.recall, 4)
        return info


def list_sample(count: int, nlist: int, seed: int) -> np.ndarray:
    """Positions (sorted) of the seeded sample of `count` points, 64 per list, that the lists
    are trained on."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(count, size=min(count, nlist * 64), replace=False))


def train_lists(data: np.ndarray, nlist: int, seed: int) -> np.ndarray:
    """k-means centroids (unit norm) of `data` on a seeded sample of 64 points per list."""
    return lists_from_sample(data[list_sample(len(data), nlist, seed)], nlist, seed)


def lists_from_sample(sample: np.ndarray, nlist: int, seed: int) -> np.ndarray:
    """k-means centroids (unit norm) of the points `sample` (`list_sample`'s of some data)."""
    kmeans = faiss.Kmeans(
        sample.shape[1],
        nlist,
        niter=10,
        seed=seed,
        spherical=True,
        max_points_per_centroid=64,
        min_points_per_centroid=1,  # few points per list only warn; lists work all the same
    )
    kmeans.train(np.ascontiguousarray(sample))
    assert kmeans.centroids is not None  # set by train
    return np.asarray(kmeans.centroids)


def _ivf_search(
    data: np.ndarray,
    want: int,
    nlist: int | None,
    nprobe: int,
    seed: int,
    progress: ProgressFn | None,
    engine: Engine | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-`want` (self included) of every vector among the members of its nprobe nearest lists.

    The lists are scanned in groups (one per engine shard); each group, carrying only its
    members' and askers' vectors, gives every asking query its best among that group's lists,
    and the groups' answers are merged by score."""
    import torch

    n = len(data)
    lists = nlist or max(1, int(math.sqrt(n)))
    probes = min(nprobe, lists)
    matrix = torch.from_numpy(data)
    centroids = torch.from_numpy(train_lists(data, lists, seed))
    probe = np.empty((n, probes), dtype=np.int64)
    step = max(1, EXACT_BLOCK_FLOATS // lists)
    with torch.inference_mode():
        for start in range(0, n, step):
            scores = matrix[start : start + step] @ centroids.T
            probe[start : start + step] = scores.topk(probes, dim=1).indices.numpy()
    home = probe[:, 0]  # each vector is a member of its nearest list
    members = [np.flatnonzero(home == c) for c in range(lists)]
    order = np.argsort(probe.ravel(), kind="stable")
    askers = np.split(order // probes, np.cumsum(np.bincount(probe.ravel(), minlength=lists))[:-1])
    engine = engine or LocalEngine()
    groups = split_range(lists, engine.shards)
    if len(groups) == 1:  # in this process: the lists read the matrix itself, no copy
        whole = _ListGroup(data, data, members, askers, np.arange(n))
        _, best_scores, best_index = _scan_lists(want, whole)
        if progress is not None:
            progress(n)
        return best_scores, best_index
    best_scores = np.full((n, want), -np.inf, dtype=np.float32)
    best_index = np.full((n, want), -1, dtype=np.int64)
    payloads = [_ListGroup.gather(data, members, askers, group) for group in groups]
    for group, (rows, scores, index) in zip(
        groups, engine.map(_scan_lists, want, payloads), strict=True
    ):
        best_scores[rows], best_index[rows] = _merge(
            best_scores[rows], best_index[rows], scores, index, want
        )
        if progress is not None:
            progress(int(sum(len(members[c]) for c in group)))
    return best_scores, best_index


@dataclass(frozen=True)
class _ListGroup:
    """What scanning a group of IVF lists needs: the members' vectors (keys), the vectors of
    the queries probing them, per list the positions of its members and askers in those, and
    the queries' global rows. A shard carries only its own vectors, not the whole matrix."""

    keys: np.ndarray
    queries: np.ndarray
    members: list[np.ndarray]
    askers: list[np.ndarray]
    rows: np.ndarray
    key_ids: np.ndarray | None = None  # global id of each key row (None: keys are all rows)

    @classmethod
    def gather(
        cls, data: np.ndarray, members: list[np.ndarray], askers: list[np.ndarray], group: range
    ) -> _ListGroup:
        key_ids = np.concatenate([members[c] for c in group])
        rows = np.unique(np.concatenate([askers[c] for c in group]))
        starts = np.cumsum([0] + [len(members[c]) for c in group])
        return cls(
            keys=data[key_ids],
            queries=data[rows],
            members=[np.arange(starts[i], starts[i + 1]) for i in range(len(group))],
            askers=[np.searchsorted(rows, askers[c]) for c in group],
            rows=rows,
            key_ids=key_ids,
        )


def _scan_lists(want: int, group: _ListGroup) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, scores, ids): each asking query's top-`want` among the members of the group's
    lists that it probes, by global id."""
    import torch

    keys_all = torch.from_numpy(group.keys)
    queries_all = torch.from_numpy(group.queries)
    global_ids = torch.from_numpy(
        group.key_ids if group.key_ids is not None else np.arange(len(group.keys))
    )
    best_scores = torch.full((len(group.queries), want), -float("inf"))
    best_index = torch.full((len(group.queries), want), -1, dtype=torch.int64)
    with torch.inference_mode():
        for queries, candidates in zip(group.askers, group.members, strict=True):
            if len(queries) == 0 or len(candidates) == 0:
                continue
            keys = keys_all[candidates]
            ids = global_ids[candidates]
            # bounds both the gathered queries [block, D] and their scores [block, members]
            block = max(1, EXACT_BLOCK_FLOATS // max(len(candidates), group.keys.shape[1]))
            for start in range(0, len(queries), block):
                rows = torch.from_numpy(queries[start : start + block])
                scores = queries_all[rows] @ keys.T
                top = min(want, len(candidates))
                values, picked = scores.topk(top, dim=1)
                merged_scores = torch.cat([best_scores[rows], values], dim=1)
                merged_index = torch.cat([best_index[rows], ids[picked]], dim=1)
                keep = merged_scores.topk(want, dim=1)
                best_scores[rows] = keep.values
                best_index[rows] = merged_index.gather(1, keep.indices)
    return group.rows, best_scores.numpy(), best_index.numpy()


def _merge(
    scores: np.ndarray,
    index: np.ndarray,
    more_scores: np.ndarray,
    more_index: np.ndarray,
    want: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Row by row, the `want` best of two top lists (each candidate is in at most one)."""
    import torch

    both_scores = torch.from_numpy(np.concatenate([scores, more_scores], axis=1))
    both_index = torch.from_numpy(np.concatenate([index, more_index], axis=1))
    keep = both_scores.topk(want, dim=1)
    return keep.values.numpy(), both_index.gather(1, keep.indices).numpy()


def _exact_rows(shared: tuple[np.ndarray, int, int], rows: range) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-`want` of the queries `rows`, `chunk` queries per product (as the local
    search does, so a shard computes exactly what the local engine would)."""
    data, want, chunk = shared
    search = _exact_searcher(data, want)
    found = [
        search(data[start : min(start + chunk, rows.stop)])
        for start in range(rows.start, rows.stop, chunk)
    ]
    return np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found])


def knn(
    vectors: np.ndarray,
    present: np.ndarray,
    k: int,
    *,
    exact_max: int = 50000,  # GraphSettings.exact_max
    method: str = "ivf",
    nlist: int | None = None,
    nprobe: int = 16,
    hnsw_m: int = 32,
    ef_search: int = 128,
    chunk: int = 4096,
    seed: int = 0,
    target_recall: float | None = None,
    recall_queries: int = 1000,
    progress: ProgressFn | None = None,
    engine: Engine | None = None,
) -> KnnResult:
    """The k nearest other vectors of every present vector (self excluded).

    With IVF and `target_recall`, the search is repeated with twice the lists probed until the
    recall on `recall_queries` sampled queries (against exact search) reaches the target.
    `engine` runs exact and IVF searches in shards (Ray tasks); HNSW runs here.
    """
    n = len(vectors)
    neighbours = np.full((n, k), -1, dtype=np.int64)
    similarities = np.zeros((n, k), dtype=np.float32)
    rows = np.flatnonzero(present)
    chosen = "exact" if len(rows) <= exact_max else method
    search: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None
    if len(rows) < 2 or k == 0:
        return KnnResult(neighbours, similarities, chosen)
    if len(rows) == n and vectors.dtype == np.float32 and vectors.flags.c_contiguous:
        data = vectors  # every vector present: no copy
    else:
        data = np.ascontiguousarray(vectors[rows], dtype=np.float32)
    want = min(k + 1, len(rows))
    probes: int | None = None
    measured: float | None = None
    if chosen == "ivf":
        lists = nlist or max(1, int(math.sqrt(len(rows))))
        probes = min(nprobe, lists)
        sample, truth = (
            _exact_sample(data, want, recall_queries, seed) if target_recall else (None, None)
        )
        while True:
            all_scores, all_found = _ivf_search(data, want, lists, probes, seed, progress, engine)
            if sample is None or truth is None or target_recall is None:
                break
            measured = recall_at_k(
                _without_self(all_found[sample], sample), _without_self(truth, sample)
            )
            if measured >= target_recall or probes >= lists:
                break
            probes = min(2 * probes, lists)
        search = None
    elif chosen == "exact":
        chunk = max(1, min(chunk, EXACT_BLOCK_FLOATS // len(rows)))
        engine = engine or LocalEngine()
        shards = split_range(len(rows), engine.shards, multiple=chunk)
        pieces = list(engine.map(_exact_rows, (data, want, chunk), shards))
        all_scores = np.concatenate([p[0] for p in pieces])
        all_found = np.concatenate([p[1] for p in pieces])
        search = None
    elif chosen == "hnsw":
        index = faiss.IndexHNSWFlat(data.shape[1], hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.add(data)
        index.hnsw.efSearch = max(ef_search, want)
        search = lambda block: index.search(block, want)  # noqa: E731
    else:
        raise ValueError(f"unknown kNN method {chosen!r}")
    for start in range(0, len(rows), chunk):
        if search is None:
            sims, found = all_scores[start : start + chunk], all_found[start : start + chunk]
        else:
            sims, found = search(data[start : start + chunk])
        query = np.arange(start, start + len(sims))[:, None]
        # drop each query itself and empty slots, keep the k best in order
        scores = np.where((found >= 0) & (found != query), sims, -np.inf)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        best = np.take_along_axis(scores, order, axis=1)
        picked = np.take_along_axis(found, order, axis=1)
        valid = np.isfinite(best)
        targets = rows[start : start + len(sims)]
        width = best.shape[1]
        neighbours[targets, :width] = np.where(valid, rows[np.clip(picked, 0, None)], -1)
        similarities[targets, :width] = np.where(valid, best, 0.0)
        if progress is not None and search is not None:
            progress(len(sims))
    return KnnResult(neighbours, similarities, chosen, probes, measured)


def _exact_sample(
    data: np.ndarray, want: int, count: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded sample of query rows and their exact top-`want` (self included)."""
    rng = np.random.default_rng(seed + 1)
    sample = np.sort(rng.choice(len(data), size=min(count, len(data)), replace=False))
    search = _exact_searcher(data, want)
    step = max(1, EXACT_BLOCK_FLOATS // len(data))  # [step, N] scores at a time, not [count, N]
    found = np.concatenate(
        [search(data[sample[i : i + step]])[1] for i in range(0, len(sample), step)]
    )
    return sample, found


def _without_self(found: np.ndarray, queries: np.ndarray) -> np.ndarray:
    return np.where(found == queries[:, None], -1, found)


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    """Share of the exact neighbours (ignoring -1) that the approximate lists found."""
    hits = total = 0
    for a, e in zip(approx, exact, strict=True):
        truth = set(e[e >= 0].tolist())
        total += len(truth)
        hits += len(truth & set(a[a >= 0].tolist()))
    return hits / total if total else 1.0
