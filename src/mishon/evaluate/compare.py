"""Recommenders by name, fitted on a split, and their results side by side.

The count-based baselines fit in seconds; `content-only` trains the MISHON network without the
graph (attention, user input, fusion and softmax) with the given run settings.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mishon.config import RunSettings
from mishon.evaluate.data import SplitData
from mishon.features.store import MANIFEST, modality_dir
from mishon.graph.build import MODALITIES, HeteroGraph
from mishon.model.baselines import BASELINES, Recommender

BASELINE_NAMES = (*BASELINES, "content-only")


def content_only_graph(data: SplitData) -> HeteroGraph:
    """A graph without edges: the nodes the content-only model needs (users and modalities)."""
    users = data.posts["user_id"].astype(str)
    user_ids = list(dict.fromkeys(users))
    index = {u: i for i, u in enumerate(user_ids)}
    num_nodes = {"user": len(user_ids)}
    for modality in MODALITIES:
        if (modality_dir(data.dataset, modality) / MANIFEST).is_file():
            num_nodes[modality] = len(data.posts)
    return HeteroGraph(
        num_nodes=num_nodes,
        edges={},
        post_ids=data.posts["post_id"].astype(str).tolist(),
        user_ids=user_ids,
        post_user=users.map(index).to_numpy(dtype=np.int64),
        post_split=data.posts["split"].to_numpy().astype(str),
        meta={"split": data.split_name},
    )


def fit_content_only(data: SplitData, settings: RunSettings) -> Recommender:
    """Train the no-graph model on `data` (nothing written) and wrap it as a recommender."""
    from mishon.train.run import MishonRecommender, train_model

    variant = settings.model_copy(
        update={"model": settings.model.model_copy(update={"graph": False})}
    )
    network, inputs, _, _ = train_model(data.dataset, variant, None, graph=content_only_graph(data))
    return MishonRecommender(network, inputs, name="content-only")


def fit_baseline(name: str, data: SplitData, settings: RunSettings | None = None) -> Recommender:
    """The baseline called `name` (see BASELINE_NAMES), fitted on the training posts of `data`."""
    if name == "content-only":
        return fit_content_only(data, settings or RunSettings())
    recommender: Recommender = BASELINES[name]()
    recommender.fit(data)
    return recommender


def relative_to_best(
    results: list[dict[str, Any]], target: str, metric: str = "F1@5", subset: str = "all"
) -> float | None:
    """`target`'s metric over the best other recommender's (None where that is zero)."""
    mine = next(r for r in results if r["recommender"] == target)[subset].get(metric)
    others = [r[subset].get(metric, 0.0) for r in results if r["recommender"] != target]
    best = max(others, default=0.0)
    return mine / best if best and mine is not None else None
