"""Ranking metrics of DESIGN section 7, for top-K hashtag lists against true hashtag sets.

For a test post with true set Y and top-K list R:
- HR@K = 1 if |R ∩ Y| > 0;  P@K = |R ∩ Y| / K;  R@K = |R ∩ Y| / |Y|;
- P@K and R@K are averaged over posts, and F1@K is the harmonic mean of the two averages;
- NDCG@K with binary gains, normalised by the ideal DCG of min(|Y|, K) hits;
- MAP@K: average precision at the ranks of the hits within the top K, divided by min(|Y|, K).
A true hashtag that the recommender cannot produce (outside its vocabulary) is simply a miss:
it stays in |Y|. Posts with an empty Y are not test cases and must not be passed in.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_KS: tuple[int, ...] = (1, 3, 5, 10)


def hit_matrix(
    recommended: Sequence[Sequence[str]], truth: Sequence[set[str]], depth: int
) -> np.ndarray:
    """bool [posts, depth]: whether the hashtag at each rank is true (False past the end)."""
    hits = np.zeros((len(truth), depth), dtype=bool)
    for row, (ranked, true) in enumerate(zip(recommended, truth, strict=True)):
        if not true:
            raise ValueError(
                f"test case {row} has no true hashtag; unlabeled posts are not test cases"
            )
        for rank, tag in enumerate(list(ranked)[:depth]):
            hits[row, rank] = tag in true
    return hits


def ranking_metrics(
    recommended: Sequence[Sequence[str]], truth: Sequence[set[str]], ks: Sequence[int] = DEFAULT_KS
) -> dict[str, float]:
    """{"HR@1": ..., "P@1": ..., "R@1": ..., "F1@1": ..., "NDCG@1": ..., ..., "MAP@K": ...}."""
    if not truth:
        return {}
    depth = max(ks)
    hits = hit_matrix(recommended, truth, depth)
    sizes = np.array([len(t) for t in truth], dtype=np.float64)
    discounts = 1.0 / np.log2(np.arange(2, depth + 2))
    results: dict[str, float] = {}
    for k in ks:
        top = hits[:, :k]
        found = top.sum(axis=1)
        precision = float((found / k).mean())
        recall = float((found / sizes).mean())
        dcg = (top * discounts[:k]).sum(axis=1)
        ideal = np.array([discounts[: int(min(s, k))].sum() for s in sizes])
        cumulative = np.cumsum(top, axis=1)
        precision_at_hits = np.where(top, cumulative / np.arange(1, k + 1), 0.0).sum(axis=1)
        results[f"HR@{k}"] = float((found > 0).mean())
        results[f"P@{k}"] = precision
        results[f"R@{k}"] = recall
        results[f"F1@{k}"] = f1_from_hits(found, sizes, k)
        results[f"NDCG@{k}"] = float((dcg / ideal).mean())
        results[f"MAP@{k}"] = float((precision_at_hits / np.minimum(sizes, k)).mean())
    return results


def f1_from_hits(found: np.ndarray, sizes: np.ndarray, k: int) -> float:
    """F1@k from each post's hits in its top k and its number of true hashtags."""
    precision = float((found / k).mean())
    recall = float((found / sizes).mean())
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def vocabulary_coverage(truth: Sequence[set[str]], vocabulary: set[str]) -> float:
    """Share of the true hashtag occurrences that are in `vocabulary` (an upper bound on recall)."""
    total = sum(len(t) for t in truth)
    return sum(len(t & vocabulary) for t in truth) / total if total else 0.0


def recall_of_occurrences(
    recommended: Sequence[Sequence[str]],
    truth: Sequence[set[str]],
    counted: set[str] | None,
    ks: Sequence[int] = (5, 10),
    inside: bool = True,
) -> dict[str, float | int]:
    """Share of the true hashtag occurrences found in the top K, over the occurrences whose
    hashtag is in `counted` (inside=True) or not (inside=False); pooled over posts.

    With `counted` the training hashtags, inside=False measures hashtags born after training.
    """
    chosen = [
        {t for t in true if (t in counted) == inside} if counted is not None else set(true)
        for true in truth
    ]
    occurrences = sum(len(c) for c in chosen)
    result: dict[str, float | int] = {"occurrences": occurrences}
    for k in ks:
        found = sum(len(c & set(list(r)[:k])) for r, c in zip(recommended, chosen, strict=True))
        result[f"R@{k}"] = found / occurrences if occurrences else 0.0
    return result
