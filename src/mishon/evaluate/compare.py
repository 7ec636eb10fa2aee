"""Results of several recommenders side by side: one's figure relative to the best other."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np

from mishon.evaluate.uncertainty import ratio_interval


def best_other(
    results: list[dict[str, Any]],
    target: str,
    metric: str = "F1@5",
    subset: str = "all",
    exclude: Collection[str] = (),
) -> dict[str, Any] | None:
    """The result with the best `metric` on `subset` among those other than `target` and
    `exclude` (the first of equals; None where there is none)."""
    others = [r for r in results if r["recommender"] != target and r["recommender"] not in exclude]
    return max(others, key=lambda r: r[subset].get(metric, 0.0), default=None)


def relative_interval(
    results: list[dict[str, Any]],
    target: str,
    mask: np.ndarray,
    sizes: np.ndarray,
    subset: str = "all",
    exclude: Collection[str] = (),
) -> list[float] | None:
    """The paired bootstrap 95% interval of `target`'s F1@5 over the best other's (as
    `relative_to_best` picks it) on the cases `mask` selects, from each result's `hits@5`."""
    best = best_other(results, target, "F1@5", subset, exclude)
    mine = next(r for r in results if r["recommender"] == target)
    if best is None or "hits@5" not in best or "hits@5" not in mine:
        return None
    chosen = np.flatnonzero(mask)
    found = np.asarray(mine["hits@5"])[chosen]
    return ratio_interval(found, np.asarray(best["hits@5"])[chosen], sizes[chosen])


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
    other = best_other(results, target, metric, subset, exclude)
    best = other[subset].get(metric, 0.0) if other is not None else 0.0
    return mine / best if best and mine is not None else None


@dataclass
class RatioRow:
    """One MISHON recommender's F1@5 over the best baseline's on one subset of posts."""

    name: str
    subset: str
    ratio: float
    best: str | None  # the best baseline's name
    interval: list[float] | None  # paired bootstrap 95%


def ratio_rows(evaluation: dict[str, Any]) -> list[RatioRow]:
    """The ratios an evaluation (as saved) holds, with their baselines and intervals."""
    intervals = evaluation.get("relative_f1_at_5_95") or {}
    best = evaluation.get("best_baseline") or {}
    return [
        RatioRow(name, subset, ratio, best.get(subset), intervals.get(name, {}).get(subset))
        for name, ratios in (evaluation.get("relative_f1_at_5") or {}).items()
        for subset, ratio in ratios.items()
        if ratio is not None
    ]
