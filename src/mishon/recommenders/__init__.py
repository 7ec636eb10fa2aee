"""Recommenders by name: the baselines and the content-only network, one contract for all."""

from __future__ import annotations

from mishon.config import RunSettings
from mishon.data.split_data import SplitData
from mishon.errors import MishonError
from mishon.recommenders.base import Recommender
from mishon.recommenders.baselines import COUNT_BASELINES
from mishon.recommenders.mishon import ContentOnly, MishonRecommender

BASELINE_NAMES = (*COUNT_BASELINES, "content-only")
NEEDS_FEATURES = frozenset({"content-knn", "content-only"})

__all__ = [
    "BASELINE_NAMES",
    "NEEDS_FEATURES",
    "ContentOnly",
    "MishonRecommender",
    "Recommender",
    "baseline",
    "fit_baseline",
]


def baseline(name: str, settings: RunSettings | None = None) -> Recommender:
    """The unfitted baseline called `name` (see BASELINE_NAMES); `settings` for content-only."""
    if name == "content-only":
        return ContentOnly(settings)
    if name not in COUNT_BASELINES:
        raise MishonError(f"unknown baseline {name!r}; choose from {list(BASELINE_NAMES)}")
    return COUNT_BASELINES[name]()


def fit_baseline(name: str, data: SplitData, settings: RunSettings | None = None) -> Recommender:
    """The baseline called `name`, fitted on the training posts of `data`."""
    return baseline(name, settings).fit(data)
