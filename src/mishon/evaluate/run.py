"""Evaluating a recommender on a split: metrics for all cases, warm users and cold-start users,
under an evaluation protocol (`protocols.py`), with recall on new and known hashtags apart."""

from __future__ import annotations

from typing import Any

import numpy as np

from mishon.data.split_data import SplitData
from mishon.evaluate.protocols import Progress, rank_under
from mishon.evaluate.uncertainty import f1_interval
from mishon.metrics import (
    DEFAULT_KS,
    hit_matrix,
    ranking_metrics,
    recall_of_occurrences,
    vocabulary_coverage,
)
from mishon.recommenders.base import Recommender


def evaluate(
    recommender: Recommender,
    data: SplitData,
    part: str = "test",
    ks: tuple[int, ...] = DEFAULT_KS,
    protocol: str = "static",
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Metrics of `recommender` (already fitted) on the labelled posts of `part`.

    Under `known-past` and `stream` the recommender takes in hashtags as it goes (`observe`),
    so it must be freshly fitted for each call. `new_hashtags` counts the true occurrences of
    hashtags no training post used (born after training), `known_hashtags` the others.
    `hits@5` holds each case's true hashtags in its top 5 (in `data.cases(part)` order: two
    results of the same part can be compared post by post), `F1@5 95%` the bootstrap interval
    of F1@5 per subset (`uncertainty.py`).
    """
    cases = data.cases(part)
    truth = [set(tags) for tags in data.posts["hashtags"].to_numpy()[cases]]
    # the vocabulary before the protocol reveals anything
    vocabulary = set(getattr(recommender, "vocabulary", set()))
    ranked = rank_under(recommender, data, part, protocol, max(ks), progress)
    masks = subset_masks(data, part)
    warm = masks["warm"]
    training = {t for tags in data.posts.loc[data.is_train, "hashtags"] for t in tags}
    recall_ks = tuple(k for k in (5, 10) if k <= max(ks))
    result: dict[str, Any] = {
        "recommender": recommender.name,
        "part": part,
        "protocol": protocol,
        "cases": {"all": len(cases), "warm": int(warm.sum()), "cold": int((~warm).sum())},
        "vocabulary_coverage": round(vocabulary_coverage(truth, vocabulary), 4),
        "new_hashtags": recall_of_occurrences(ranked, truth, training, recall_ks, inside=False),
        "known_hashtags": recall_of_occurrences(ranked, truth, training, recall_ks, inside=True),
    }
    found = hit_matrix(ranked, truth, 5).sum(axis=1).astype(int) if truth else np.zeros(0, int)
    sizes = true_counts(data, part)
    result["hits@5"] = found.tolist()
    result["F1@5 95%"] = {}
    for subset, mask in masks.items():
        chosen = np.flatnonzero(mask)
        result[subset] = ranking_metrics(
            [ranked[i] for i in chosen], [truth[i] for i in chosen], ks
        )
        result["F1@5 95%"][subset] = f1_interval(found[chosen], sizes[chosen])
    return result


def subset_masks(data: SplitData, part: str) -> dict[str, np.ndarray]:
    """Which of `part`'s cases (in `data.cases(part)` order) are in each subset: all, warm
    (users with training posts) and cold (users without)."""
    users = data.posts["user_id"].astype(str).to_numpy()[data.cases(part)]
    warm_users = data.warm_users()
    warm = np.array([u in warm_users for u in users], dtype=bool)
    return {"all": np.ones(len(users), dtype=bool), "warm": warm, "cold": ~warm}


def true_counts(data: SplitData, part: str) -> np.ndarray:
    """Each of `part`'s cases' number of true hashtags (in `data.cases(part)` order)."""
    return np.array([len(tags) for tags in data.posts["hashtags"].to_numpy()[data.cases(part)]])
