"""User-user Jaccard similarity of training hashtag sets, top-k per user, in row blocks.

With B the binary user x hashtag matrix, the intersections |A and B| for a block of users are
B[block] @ B.T (a sparse product), and |A or B| = |A| + |B| - |A and B|. Only the non-zero
intersections of one block exist at a time: never a dense U x U matrix.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from mishon.graph.engine import Engine, LocalEngine, split_range


def user_hashtag_matrix(
    user_index: np.ndarray, tag_lists: list[list[str]], n_users: int
) -> tuple[sp.csr_matrix, list[str]]:
    """Binary CSR [n_users, n_tags] of who used which hashtag, and the hashtag vocabulary."""
    vocabulary: dict[str, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    for user, tags in zip(user_index.tolist(), tag_lists, strict=True):
        for tag in tags:
            rows.append(user)
            cols.append(vocabulary.setdefault(tag, len(vocabulary)))
    matrix = sp.coo_matrix(
        (
            np.ones(len(rows), dtype=np.float32),
            (np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64)),
        ),
        shape=(n_users, len(vocabulary)),
    ).tocsr()  # repeated (user, tag) pairs are summed here ...
    matrix.data[:] = 1.0  # ... and turned back into presence
    return matrix, list(vocabulary)


def jaccard_topk(
    matrix: sp.csr_matrix,
    k: int,
    threshold: float,
    block: int = 1024,
    engine: Engine | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(neighbours [U, k] with -1 for none, similarities [U, k]) of the Jaccard top-k above
    `threshold` (inclusive) for every user; ties broken by the lower user index. `engine`
    computes shards of user blocks (Ray tasks) with the same result."""
    n = matrix.shape[0]
    engine = engine or LocalEngine()
    shared = (matrix, matrix.T.tocsr(), np.asarray(matrix.sum(axis=1)).ravel(), k, threshold, block)
    shards = split_range(n, engine.shards, multiple=block)
    parts = list(engine.map(_jaccard_rows, shared, shards))
    if not parts:
        return np.full((0, k), -1, dtype=np.int64), np.zeros((0, k), dtype=np.float32)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _jaccard_rows(
    shared: tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray, int, float, int], users: range
) -> tuple[np.ndarray, np.ndarray]:
    """The Jaccard top-k of the users `users`, `block` users per sparse product."""
    matrix, transposed, sizes, k, threshold, block = shared
    neighbours = np.full((len(users), k), -1, dtype=np.int64)
    similarities = np.zeros((len(users), k), dtype=np.float32)
    for start in range(users.start, users.stop, block):
        stop = min(start + block, users.stop)
        inter = (matrix[start:stop] @ transposed).tocsr()
        for local in range(stop - start):
            user = start + local
            lo, hi = inter.indptr[local], inter.indptr[local + 1]
            others = inter.indices[lo:hi]
            common = inter.data[lo:hi]
            keep = others != user
            others, common = others[keep], common[keep]
            if len(others) == 0:
                continue
            scores = common / (sizes[user] + sizes[others] - common)
            good = scores >= threshold
            others, scores = others[good], scores[good]
            order = np.lexsort((others, -scores))[:k]
            row = user - users.start
            neighbours[row, : len(order)] = others[order]
            similarities[row, : len(order)] = scores[order]
    return neighbours, similarities
