"""k nearest neighbours by inner product (cosine on unit vectors) with faiss.

Exact search (IndexFlatIP) up to `exact_max` vectors; beyond, an approximate index: IVF-Flat
(k-means coarse quantiser, `nprobe` lists searched) or HNSW. Queries run in chunks, so besides
the index the memory is O(chunk x k). Absent vectors (present=False) take part in nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import faiss
import numpy as np

ProgressFn = Callable[[int], None]


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
    index = build_index(data, chosen, nlist, hnsw_m, seed)
    if chosen == "ivf":
        index.nprobe = nprobe
    elif chosen == "hnsw":
        index.hnsw.efSearch = max(ef_search, k + 1)
    want = min(k + 1, len(rows))
    for start in range(0, len(rows), chunk):
        block = data[start : start + chunk]
        sims, found = index.search(block, want)
        query = np.arange(start, start + len(block))[:, None]
        keep = (found != query) & (found >= 0)  # drop self and empty slots
        for i in range(len(block)):
            idx = found[i][keep[i]][:k]
            neighbours[rows[start + i], : len(idx)] = rows[idx]
            similarities[rows[start + i], : len(idx)] = sims[i][keep[i]][:k]
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
