"""Approximate inner-product search over rows that keep arriving: a growing faiss inverted file.

MISHON live reads the known posts nearest to a post in the model's space and in each modality's
content space. Up to `EvidenceIndexSettings.exact_max` known posts that is an exact scan
(`evidence.py`); beyond, a `GrowingIndex` per space:
- an IVF index, its lists from spherical k-means on a seeded sample of the rows present when it
  is built (`graph.knn.lists_from_sample`, as the graph's kNN), each list's vectors stored as
  `EvidenceIndexSettings.codes`: `pq4` (faiss `IndexIVFPQFastScan`: 4-bit product codes, two
  dimensions per code, trained on the seeded sample (4,096 rows at least); a list is scanned
  with table lookups held in SIMD registers) or `float16` (`IndexIVFScalarQuantizer`).
  Product codes rank rows only roughly: the owner asks for more rows than it needs and
  re-scores them exactly against its float32 vectors (`EvidenceIndexSettings.refine`,
  `candidates`). The codes are float16 below `PQ_MIN_ROWS` rows (too few to train 16
  centroids per code), below `PQ_MIN_DIM` dimensions (a short float16 vector is small and
  quick to scan already, while the codes of few dimensions lose the most: in
  tests/test_one_ranker.py's 16-dimensional clusters they find 0.74 of the 20 nearest,
  float16 1.00) and in an odd number of them;
- `add` appends rows to their nearest list at once, so a post recorded a moment ago is found
  by the next query; nothing is removed (a known post stays known);
- once the rows are `regrow` times those the lists were trained on, `outgrown` says so and the
  owner builds it again from its vectors (lists of about sqrt(N) members keep a query's cost
  near nprobe / sqrt(N) of a scan).
faiss releases the GIL while it searches, so several threads can search one index; adding and
searching at the same moment must be serialised by the owner.
"""

from __future__ import annotations

import math
from typing import Any

import faiss
import numpy as np

from mishon.config import EvidenceIndexSettings
from mishon.graph.knn import list_sample, lists_from_sample

ADD_CHUNK = 262_144  # rows copied and added at a time while an index is built
PQ_MIN_ROWS = 4096  # fewer rows than this: float16 codes (see module)
PQ_MIN_DIM = 64  # fewer dimensions than this: float16 codes (see module)


class GrowingIndex:
    """Rows (ids given by the caller) of one vector space, searchable by inner product."""

    def __init__(
        self, source: np.ndarray, rows: np.ndarray, settings: EvidenceIndexSettings
    ) -> None:
        """Built over rows `rows` [N] (N >= 1) of `source` [*, d] (unit rows), which are its ids.

        The rows are gathered `ADD_CHUNK` at a time, so building never holds a second float32
        copy of all of them (at 10,000,000 known posts that copy alone was 5 GB)."""
        if len(rows) == 0:
            raise ValueError("an index needs at least one vector to train its lists on")
        self.settings = settings
        self.dim = source.shape[1]
        self.trained_on = len(rows)
        self.index: Any  # faiss's stubs know neither IndexIDMap's nor IVF's attributes
        if settings.kind == "hnsw":
            self.nlist = 0
            self.codes = "float16"
            fp16: Any = faiss.ScalarQuantizer.QT_fp16  # an int the stubs type as a quantizer
            graph = faiss.IndexHNSWSQ(
                self.dim, fp16, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT
            )  # fmt: skip
            graph.hnsw.efConstruction = settings.ef_construction
            graph.hnsw.efSearch = settings.ef_search
            graph.train(_gather(source, rows[:1]))  # fp16 needs no statistics
            self._inner = graph  # the map refers to it: keep it alive
            self.index = faiss.IndexIDMap(graph)
        else:
            self.nlist = min(settings.nlist or max(1, int(math.sqrt(len(rows)))), len(rows))
            sample = _gather(source, rows[list_sample(len(rows), self.nlist, settings.seed)])
            quantizer = faiss.IndexFlatIP(self.dim)
            quantizer.add(lists_from_sample(sample, self.nlist, settings.seed))
            coded = len(rows) >= PQ_MIN_ROWS and self.dim >= PQ_MIN_DIM and self.dim % 2 == 0
            self.codes = "pq4" if settings.codes == "pq4" and coded else "float16"
            if self.codes == "pq4":
                self.index = faiss.IndexIVFPQFastScan(
                    quantizer, self.dim, self.nlist, self.dim // 2, 4,
                    faiss.METRIC_INNER_PRODUCT,
                )  # fmt: skip
                self.index.by_residual = True  # codes of the offset from the list's centre
                # the lists are given: this trains the codes alone, on the lists' sample
                # where it holds 4,096 rows (list_sample takes 64 a list), else a larger one
                least = max(self.nlist, PQ_MIN_ROWS // 64)
                if least > self.nlist:
                    sample = _gather(source, rows[list_sample(len(rows), least, settings.seed)])
                self.index.train(sample)
                # faiss 1.15's own choice and its other heap-kept scans (10, 12) answered a
                # process's first search with no rows (tests/test_one_ranker.py); 13 keeps the
                # best in a reservoir, as fast (0.43 ms at 2,000,000 x 128, nprobe 64)
                self.index.implem = 13
            else:
                self.index = faiss.IndexIVFScalarQuantizer(
                    quantizer, self.dim, self.nlist, faiss.ScalarQuantizer.QT_fp16,
                    faiss.METRIC_INNER_PRODUCT,
                )  # fmt: skip
                self.index.train(sample[:1])  # fp16 needs no statistics
            self.index.nprobe = min(settings.nprobe, self.nlist)
            self._quantizer = quantizer  # the index refers to it: keep it alive
        for start in range(0, len(rows), ADD_CHUNK):
            chunk = rows[start : start + ADD_CHUNK]
            self.add(source[chunk], chunk)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def outgrown(self, more: int = 0) -> bool:
        """Whether the rows, with `more` to come, outgrow the lists (build it again); an
        HNSW graph never does."""
        if self.settings.kind == "hnsw":
            return False
        return len(self) + more > self.settings.regrow * self.trained_on

    def add(self, vectors: np.ndarray, rows: np.ndarray) -> None:
        """Rows `rows` [n] with `vectors` [n, d] become searchable now."""
        if len(rows):
            self.index.add_with_ids(
                np.ascontiguousarray(vectors, dtype=np.float32),
                np.ascontiguousarray(rows, dtype=np.int64),
            )

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        """Ids [Q, k] of the (approximately) `k` nearest rows of each query, -1 where fewer."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = max(1, min(k, len(self)))
        if self.settings.kind == "hnsw":
            self._inner.hnsw.efSearch = max(self.settings.ef_search, k)
        _, found = self.index.search(queries, k)
        return found

    def describe(self) -> dict[str, object]:
        if self.settings.kind == "hnsw":
            return {"rows": len(self), "kind": "hnsw", "m": self.settings.hnsw_m,
                    "ef_search": self.settings.ef_search}  # fmt: skip
        return {"rows": len(self), "kind": "ivf", "lists": self.nlist,
                "nprobe": int(self.index.nprobe), "codes": self.codes}  # fmt: skip


def _gather(source: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(source[rows], dtype=np.float32)
