"""How sure a figure is: bootstrap intervals over the evaluated posts.

A test set is one sample of posts; another would give other figures. The bootstrap draws
`RESAMPLES` samples of the same size from the evaluated posts, with replacement, and computes
the figure on each: the middle 95% of those values is the interval. Two recommenders ranked the
same posts are compared on the **same** resamples (paired), so the interval of their ratio
leaves out the posts' difficulty that they share: a ratio whose interval holds 1 is not a
difference these posts can show. The resamples are seeded: the same posts give the same
intervals.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

RESAMPLES = 1000
LEVEL = 0.95
CHUNK = 100  # resamples drawn at once ([CHUNK, posts] indices)


def _resamples(count: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Index arrays [chunk, count] of `RESAMPLES` bootstrap samples of `count` posts."""
    rng = np.random.default_rng(seed)
    for start in range(0, RESAMPLES, CHUNK):
        yield rng.integers(0, count, size=(min(CHUNK, RESAMPLES - start), count), dtype=np.int64)


def _f1(found: np.ndarray, sizes: np.ndarray, k: int) -> np.ndarray:
    """F1@k of each resample (rows of `found` and `sizes`), as `metrics.f1_from_hits`."""
    precision = (found / k).mean(axis=1)
    recall = (found / sizes).mean(axis=1)
    total = precision + recall
    return np.where(total > 0, 2 * precision * recall / np.where(total > 0, total, 1.0), 0.0)


def _interval(values: np.ndarray) -> list[float]:
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return [round(float(low), 4), round(float(high), 4)]


def f1_interval(found: np.ndarray, sizes: np.ndarray, k: int = 5) -> list[float] | None:
    """The 95% bootstrap interval of F1@k over posts with `found` hits in their top k and
    `sizes` true hashtags (None without posts)."""
    found = np.asarray(found, dtype=np.float64)
    sizes = np.asarray(sizes, dtype=np.float64)
    if not len(found):
        return None
    values = np.concatenate([_f1(found[i], sizes[i], k) for i in _resamples(len(found))])
    return _interval(values)


def ratio_interval(
    found: np.ndarray, other: np.ndarray, sizes: np.ndarray, k: int = 5
) -> list[float] | None:
    """The paired 95% bootstrap interval of F1@k(found) / F1@k(other) over the same posts
    (None without posts, or where the other's F1@k is 0 in a resample)."""
    found = np.asarray(found, dtype=np.float64)
    other = np.asarray(other, dtype=np.float64)
    sizes = np.asarray(sizes, dtype=np.float64)
    if not len(found):
        return None
    ratios = []
    for i in _resamples(len(found)):
        below = _f1(other[i], sizes[i], k)
        if not below.all():
            return None
        ratios.append(_f1(found[i], sizes[i], k) / below)
    return _interval(np.concatenate(ratios))


def reading(interval: list[float] | None) -> str:
    """What a ratio's interval says: better (all above 1), worse (all below), no clear
    difference (it holds 1); "-" without one."""
    if not interval:
        return "-"
    low, high = interval
    return "better" if low > 1 else "worse" if high < 1 else "no clear difference"


def interval_text(interval: list[float] | None, digits: int = 3) -> str:
    """A 95% interval as "low-high" ("-" where there is none)."""
    if not interval:
        return "-"
    low, high = interval
    return f"{low:.{digits}f}-{high:.{digits}f}"
