"""Evaluating a recommender on a split: metrics for all cases, warm users and cold-start users."""

from __future__ import annotations

from typing import Any

import numpy as np

from mishon.data.split_data import SplitData
from mishon.metrics import DEFAULT_KS, ranking_metrics, vocabulary_coverage
from mishon.recommenders.base import Recommender


def evaluate(
    recommender: Recommender, data: SplitData, part: str = "test", ks: tuple[int, ...] = DEFAULT_KS
) -> dict[str, Any]:
    """Metrics of `recommender` (already fitted) on the labelled posts of `part`."""
    cases = data.cases(part)
    truth = [set(tags) for tags in data.posts["hashtags"].to_numpy()[cases]]
    ranked = recommender.recommend(cases, max(ks))
    users = data.posts["user_id"].astype(str).to_numpy()[cases]
    warm_users = data.warm_users()
    warm = np.array([u in warm_users for u in users], dtype=bool)
    result: dict[str, Any] = {
        "recommender": recommender.name,
        "part": part,
        "cases": {"all": len(cases), "warm": int(warm.sum()), "cold": int((~warm).sum())},
        "vocabulary_coverage": round(
            vocabulary_coverage(truth, getattr(recommender, "vocabulary", set())), 4
        ),
    }
    for subset, mask in (("all", np.ones(len(cases), dtype=bool)), ("warm", warm), ("cold", ~warm)):
        chosen = np.flatnonzero(mask)
        result[subset] = ranking_metrics(
            [ranked[i] for i in chosen], [truth[i] for i in chosen], ks
        )
    return result
