"""k nearest neighbours by inner product (cosine on unit vectors) with faiss.

Exact search (blocks of queries times all vectors, then topk) up to `exact_max` vectors; beyond,
an approximate faiss index: IVF-Flat (k-means coarse quantiser, `nprobe` lists searched) or HNSW.
Queries run in chunks, so besides the vectors and the index the memory is O(chunk x N) for exact
search (bounded by EXACT_BLOCK_FLOATS) and O(chunk x k) for the approximate ones. Absent
vectors (present=False) take part in nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import faiss
import numpy as np

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


def build_index(
    vectors: np.ndarray, method: str, nlist: int | None, hnsw_m: int, seed: int
) -> faiss.Index:
    """A faiss inner-product index over `vectors` (float32, C-contiguous)."""
    n, dim = vectors.shape
    if method == "exact":
        index = faiss.IndexFlatIP(dim)
    elif method == "ivf":
        lists = nlist or max(1, min(int(math.sqrt(n)), n // 39))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, lists, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        # k-means on a seeded sample: faiss's own cap of 256 points per list
        rng = np.random.default_rng(seed)
        sample = vectors[np.sort(rng.choice(n, size=min(n, lists * 256), replace=False))]
        index.train(sample)
    elif method == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
    else:
        raise ValueError(f"unknown index method {method!r}")
    index.add(vectors)
    return index


def knn(
    vectors: np.ndarray,
    present: np.ndarray,
    k: int,
    *,
    exact_max: int = 20000,
    method: str = "ivf",
    nlist: int | None = None,
    nprobe: int = 16,
    hnsw_m: int = 32,
    ef_search: int = 128,
    chunk: int = 4096,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> KnnResult:
    """The k nearest other vectors of every present vector (self excluded)."""
    n = len(vectors)
    neighbours = np.full((n, k), -1, dtype=np.int64)
    similarities = np.zeros((n, k), dtype=np.float32)
    rows = np.flatnonzero(present)
    chosen = "exact" if len(rows) <= exact_max else method
    if len(rows) < 2 or k == 0:
        return KnnResult(neighbours, similarities, chosen)
    data = np.ascontiguousarray(vectors[rows], dtype=np.float32)
    want = min(k + 1, len(rows))
    if chosen == "exact":
        search = _exact_searcher(data, want)
        chunk = max(1, min(chunk, EXACT_BLOCK_FLOATS // len(rows)))
    else:
        index = build_index(data, chosen, nlist, hnsw_m, seed)
        if chosen == "ivf":
            index.nprobe = nprobe
        else:
            index.hnsw.efSearch = max(ef_search, k + 1)
        search = lambda block: index.search(block, want)  # noqa: E731
    for start in range(0, len(rows), chunk):
        block = data[start : start + chunk]
        sims, found = search(block)
        query = np.arange(start, start + len(block))[:, None]
        # drop each query itself and empty slots, keep the k best in order
        scores = np.where((found >= 0) & (found != query), sims, -np.inf)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        best = np.take_along_axis(scores, order, axis=1)
        picked = np.take_along_axis(found, order, axis=1)
        valid = np.isfinite(best)
        targets = rows[start : start + len(block)]
        width = best.shape[1]
        neighbours[targets, :width] = np.where(valid, rows[np.clip(picked, 0, None)], -1)
        similarities[targets, :width] = np.where(valid, best, 0.0)
        if progress is not None:
            progress(len(block))
    return KnnResult(neighbours, similarities, chosen)


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    """Share of the exact neighbours (ignoring -1) that the approximate lists found."""
    hits = total = 0
    for a, e in zip(approx, exact, strict=True):
        truth = set(e[e >= 0].tolist())
        total += len(truth)
        hits += len(truth & set(a[a >= 0].tolist()))
    return hits / total if total else 1.0
