"""MISHON's networks behind the recommender contract: a trained run, or the content-only model.

The content-only model is the MISHON network without the graph (attention, user input, fusion
and softmax), trained on the split with the given run settings: the ablation every graph
result is measured against.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Self

import numpy as np
import torch

from mishon.config import RunSettings
from mishon.data.split_data import SplitData
from mishon.errors import MishonError
from mishon.features.store import MANIFEST, modality_dir
from mishon.graph.build import MODALITIES, HeteroGraph
from mishon.model.inference import encode_eval, top_k
from mishon.model.inputs import ModelInputs, Targets
from mishon.model.network import MishonNetwork
from mishon.train.run import train_model


class MishonRecommender:
    """A trained network: `fit` encodes every post of its graph once (no training).

    `observe(positions)` makes those posts' (in-vocabulary) hashtags hashtag inputs of their
    nodes, as training posts' are, so the graph carries them to similar posts and users; the
    weights do not change. The posts are encoded again at the next `recommend` once
    `refresh_every` posts have been observed since the last encoding (1: exactly after each).
    A network without hashtag inputs (the paper's model, content-only) cannot use them.
    """

    def __init__(
        self,
        network: MishonNetwork,
        inputs: ModelInputs,
        name: str = "MISHON",
        refresh_every: int = 1,
    ) -> None:
        self.name = name
        self.network = network
        self.inputs = inputs
        self.refresh_every = refresh_every

    def fit(self, data: SplitData) -> Self:
        if len(data.posts) != self.inputs.num_posts:
            raise MishonError(
                f"{self.name} was trained on a graph of {self.inputs.num_posts} posts, "
                f"not the {len(data.posts)} posts of split {data.split_name!r}"
            )
        self.tags_ = self.inputs.vocabulary.tags
        self.vocabulary = set(self.tags_)
        self.hashtags_ = data.posts["hashtags"].to_numpy()
        self.known_ = np.asarray(data.is_train, dtype=bool).copy()
        self.pending_ = 0
        self.ranking_ = False  # whether a ranking has started (refresh_every 0 then freezes)
        self.shown_ = self.inputs  # the inputs as last encoded: training posts show hashtags
        self.fused_: torch.Tensor = encode_eval(self.network, self.inputs)
        self.states_: list[dict[str, torch.Tensor]] | None = None
        return self

    def layer_states(self) -> list[dict[str, torch.Tensor]]:
        """Every layer's node states of the last encoding (the inductive path's cache)."""
        if self.states_ is None:
            self.network.eval()
            with torch.no_grad():
                self.states_ = self.network.layer_states(
                    self.network.node_inputs(self.shown_), self.shown_
                )
        return self.states_

    def observe(self, positions: np.ndarray) -> None:
        if not self.network.uses_hashtag_inputs:
            return
        self.known_[np.asarray(positions, dtype=np.int64)] = True
        self.pending_ += len(positions)

    def refresh(self) -> bool:
        """Encode again if `refresh_every` posts were observed since the last encoding (0: only
        before the first ranking); called before each ranking."""
        due = self.pending_ >= self.refresh_every if self.refresh_every else not self.ranking_
        self.ranking_ = True
        if self.pending_ and due:
            self._encode_known()
            return True
        return False

    def recommend(self, positions: np.ndarray, k: int) -> list[list[str]]:
        self.refresh()
        ranked = top_k(self.network, self.fused_, np.asarray(positions), min(k, len(self.tags_)))
        return [[self.tags_[i] for i in row] for row in ranked]

    def _encode_known(self) -> None:
        """Encode again with every known post's hashtags as inputs."""
        shown = [
            list(tags) if known else []
            for tags, known in zip(self.hashtags_, self.known_, strict=True)
        ]
        targets = Targets.build(shown, self.inputs.vocabulary).to(self.inputs.device)
        self.shown_ = replace(self.inputs, targets=targets)
        self.fused_ = encode_eval(self.network, self.shown_)
        self.states_ = None
        self.pending_ = 0


class ContentOnly:
    """The no-graph MISHON network, trained by `fit` with `settings` (nothing written)."""

    name = "content-only"

    def __init__(self, settings: RunSettings | None = None) -> None:
        self.settings = settings

    def fit(self, data: SplitData) -> Self:
        settings = self.settings or RunSettings()
        variant = settings.model_copy(
            update={"model": settings.model.model_copy(update={"graph": False})}
        )
        network, inputs, _, _ = train_model(
            data.dataset, variant, None, graph=content_only_graph(data)
        )
        self.model_ = MishonRecommender(network, inputs, name=self.name).fit(data)
        self.vocabulary = self.model_.vocabulary
        return self

    def observe(self, positions: np.ndarray) -> None:
        self.model_.observe(positions)  # no graph, no hashtag inputs: nothing it can use

    def recommend(self, positions: np.ndarray, k: int) -> list[list[str]]:
        return self.model_.recommend(positions, k)


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
