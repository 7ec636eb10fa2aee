"""A new post's nearest graph posts in one modality: exact for small graphs, IVF beyond.

Vectors are the graph's pooled, centred unit vectors, so the inner product is the cosine the
graph's kNN edges used. Up to `exact_max` posts one matrix-vector product is exact and fast;
beyond, a faiss inverted file (sqrt(N) lists, k-means on a seeded sample) is searched with the
`nprobe` the graph build settled on, so a query costs about nprobe/sqrt(N) of a full scan.
"""

from __future__ import annotations

import math

import faiss
import numpy as np

from mishon.config import EdgeSettings
from mishon.graph.knn import train_lists


class PostIndex:
    """Search one modality's graph posts by cosine, keeping the graph's k and threshold."""

    def __init__(
        self,
        vectors: np.ndarray,
        present: np.ndarray,
        edges: EdgeSettings,
        exact_max: int,
        nprobe: int,
        seed: int = 0,
    ) -> None:
        self.edges = edges
        self.members = np.flatnonzero(present)
        data = np.ascontiguousarray(vectors[self.members], dtype=np.float32)
        self.exact = len(data) <= exact_max
        if self.exact:
            self.data = data
            return
        nlist = max(1, int(math.sqrt(len(data))))
        quantizer = faiss.IndexFlatIP(data.shape[1])
        quantizer.add(train_lists(data, nlist, seed))
        self.index = faiss.IndexIVFFlat(quantizer, data.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
        self.index.is_trained = True
        self.index.add(data)
        self.index.nprobe = min(nprobe, nlist)

    @property
    def method(self) -> str:
        return "exact" if self.exact else f"ivf (nprobe {self.index.nprobe})"

    def search(self, vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(graph positions, similarities) of the k nearest posts at or above the threshold."""
        k = min(self.edges.k, len(self.members))
        if k == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        query = np.ascontiguousarray(vector, dtype=np.float32)
        if self.exact:
            similarity = self.data @ query
            top = np.argpartition(-similarity, k - 1)[:k]
            top = top[np.lexsort((top, -similarity[top]))]
            found, scores = top, similarity[top]
        else:
            scores, found = self.index.search(query[None], k)
            scores, found = scores[0], found[0]
            valid = found >= 0
            scores, found = scores[valid], found[valid]
        keep = scores >= self.edges.threshold
        return self.members[found[keep]], scores[keep].astype(np.float32)
