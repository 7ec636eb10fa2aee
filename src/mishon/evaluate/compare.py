"""Results of several recommenders side by side: one's figure relative to the best other."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any


def relative_to_best(
    results: list[dict[str, Any]],
    target: str,
    metric: str = "F1@5",
    subset: str = "all",
    exclude: Collection[str] = (),
) -> float | None:
    """`target`'s metric over the best other recommender's, those in `exclude` left out
    (None where that is zero)."""
    mine = next(r for r in results if r["recommender"] == target)[subset].get(metric)
    others = [
        r[subset].get(metric, 0.0)
        for r in results
        if r["recommender"] != target and r["recommender"] not in exclude
    ]
    best = max(others, default=0.0)
    return mine / best if best and mine is not None else None
