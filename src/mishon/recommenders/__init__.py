"""Recommenders by name, one contract for all (`base.Recommender`): the baselines, the
content-only network, and, from a trained run, MISHON and MISHON live (`recommender`)."""

from __future__ import annotations

from mishon.config import RunSettings
from mishon.data.split_data import SplitData
from mishon.errors import MishonError
from mishon.recommenders.base import Recommender
from mishon.recommenders.baselines import COUNT_BASELINES
from mishon.recommenders.live import LiveMishon
from mishon.recommenders.mishon import ContentOnly, MishonRecommender
from mishon.train.run import TrainedRun

BASELINE_NAMES = (*COUNT_BASELINES, "content-only")
RUN_RECOMMENDERS = ("mishon", "mishon-live")  # need a trained run
RECOMMENDER_NAMES = (*BASELINE_NAMES, *RUN_RECOMMENDERS)
NEEDS_FEATURES = frozenset({"content-knn", "content-only"})

__all__ = [
    "BASELINE_NAMES",
    "NEEDS_FEATURES",
    "RECOMMENDER_NAMES",
    "ContentOnly",
    "MishonRecommender",
    "Recommender",
    "baseline",
    "fit_baseline",
    "recommender",
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


def recommender(
    name: str, settings: RunSettings | None = None, run: TrainedRun | None = None
) -> Recommender:
    """The unfitted recommender called `name` (RECOMMENDER_NAMES): a baseline, or MISHON
    (the run's network) or MISHON live (the run's one live ranker, default weights until
    `evaluate.live.select_live_weights`), which need the loaded `run`."""
    if name not in RUN_RECOMMENDERS:
        if name not in BASELINE_NAMES:
            raise MishonError(
                f"unknown recommender {name!r}; choose from {list(RECOMMENDER_NAMES)}"
            )
        return baseline(name, settings)
    if run is None:
        raise MishonError(f"{name} ranks with a trained run: pass run=load_run(RUN)")
    if name == "mishon":
        return MishonRecommender(run.network, run.inputs)
    return LiveMishon.from_run(run)
