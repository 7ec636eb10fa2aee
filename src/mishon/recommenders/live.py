"""MISHON live: the trained network plus everything known when a post is ranked.

Each candidate hashtag's score is a weighted sum of its evidence (`evidence.py`): the model's
probability, label propagation over the model's fused space (all known posts, and the user's
own), the user's history, content kNN and popularity. The weights are selected on validation
posts under the same protocol as the evaluation (`select_weights`, driven by
`evaluate/live.py`), by coordinate ascent on F1@5; nothing is retrained. Posts revealed by
the protocol (`observe`) join the known posts with their hashtags, so hashtags born after
training become recommendable at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import numpy as np
import torch

from mishon.data.split_data import SplitData
from mishon.errors import MishonError
from mishon.metrics import f1_from_hits
from mishon.model.inputs import ModelInputs
from mishon.model.network import MishonNetwork
from mishon.recommenders.baselines import content_vectors
from mishon.recommenders.evidence import (
    EVIDENCE,
    EvidenceSettings,
    EvidenceTable,
    KnownPosts,
    Query,
    gather_evidence,
)
from mishon.recommenders.hashtag_side import (
    HashtagEncoder,
    HashtagSide,
    HashtagSideSettings,
    NameEmbedder,
    check_names,
    fit_hashtag_encoder,
)
from mishon.recommenders.mishon import MishonRecommender

WEIGHT_GRID = (0.0, 0.01, 0.03, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0, 5.0)
ANCHOR = "neighbours"  # its weight stays 1: scores are compared, not their scale
DEFAULT_WEIGHTS = {"model": 1.0, "neighbours": 1.0, "own_posts": 0.3, "history": 0.1,
                   "content": 1.0, "popularity": 0.03, "linked_users": 0.1,
                   "model_outside": 1.0}  # fmt: skip
BLOCK = 64  # queries whose similarities are computed at once ([BLOCK, posts] arrays)


@dataclass
class LiveWeights:
    """Evidence weights for posts of users with known posts, and for those of users with none
    yet (new and cold-start users), selected apart: a learned gate between the user's own
    evidence and everybody's."""

    known_user: dict[str, float]
    new_user: dict[str, float]

    @classmethod
    def of(cls, weights: LiveWeights | dict[str, float] | None) -> LiveWeights:
        """`weights` as LiveWeights: one dict serves both groups; None: DEFAULT_WEIGHTS."""
        if isinstance(weights, LiveWeights):
            return weights
        chosen = dict(weights or DEFAULT_WEIGHTS)
        return cls(chosen, dict(chosen))

    def for_user(self, has_known_posts: bool) -> dict[str, float]:
        return self.known_user if has_known_posts else self.new_user

    def limited_to(self, use: tuple[str, ...]) -> LiveWeights:
        """These weights with every evidence outside `use` at 0."""

        def limited(weights: dict[str, float]) -> dict[str, float]:
            return {n: weights.get(n, 0.0) if n in use else 0.0 for n in EVIDENCE}

        return LiveWeights(limited(self.known_user), limited(self.new_user))


def rank_tables(tables: list[EvidenceTable], weights: dict[str, float], k: int) -> list[list[str]]:
    """Each table's top-`k` hashtags by the weighted evidence (ties by hashtag)."""
    return [[tag for tag, _ in table.ranked(weights, k)] for table in tables]


def check_evidence(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """`names` as a tuple of known evidence names (at least one), else a clear error."""
    unknown = [n for n in names if n not in EVIDENCE]
    if unknown or not names:
        raise MishonError(
            f"unknown evidence {unknown or '(none given)'}; choose from {list(EVIDENCE)}"
        )
    return tuple(names)


def select_weights(
    tables: list[EvidenceTable],
    truth: list[set[str]],
    k: int = 5,
    rounds: int = 3,
    grid: tuple[float, ...] = WEIGHT_GRID,
    use: tuple[str, ...] = EVIDENCE,
) -> tuple[dict[str, float], float]:
    """Weights maximising F1@k over `tables` (validation posts): coordinate ascent over `grid`
    from the neighbours alone (or the first of `use`), `rounds` passes; evidence outside `use`
    keeps weight 0. Returns (weights, the F1@k they reach)."""
    hits = [
        np.array([t in true for t in table.hashtags], dtype=bool)
        for table, true in zip(tables, truth, strict=True)
    ]
    sizes = np.array([len(t) for t in truth], dtype=np.float64)

    def f1(weights: np.ndarray) -> float:
        found = np.zeros(len(tables))
        for i, table in enumerate(tables):
            scores = table.values @ weights
            top = np.argsort(-scores, kind="stable")[:k]
            found[i] = hits[i][top].sum()
        return f1_from_hits(found, sizes, k)

    use = check_evidence(use)
    anchor = EVIDENCE.index(ANCHOR if ANCHOR in use else use[0])
    weights = np.zeros(len(EVIDENCE))
    weights[anchor] = 1.0
    best = f1(weights)
    for _ in range(rounds):
        improved = False
        for i in range(len(EVIDENCE)):
            if i == anchor or EVIDENCE[i] not in use:
                continue
            for value in grid:
                trial = weights.copy()
                trial[i] = value
                score = f1(trial)
                if score > best + 1e-9:
                    best, weights, improved = score, trial, True
        if not improved:
            break
    return {name: float(w) for name, w in zip(EVIDENCE, weights, strict=True)}, best


class LiveMishon:
    """A trained network ranking every known hashtag with its live evidence (see module).

    `fit` encodes the graph and makes the training posts known; `observe` reveals more posts
    (their hashtags also become the network's hashtag inputs, encoded again every
    `refresh_every` posts, as `MishonRecommender` does). `weights` (LiveWeights, or one dict for
    all posts) default to DEFAULT_WEIGHTS; only the `evidence` named count (an ablation leaves
    some out);
    `evaluate.live.select_live_weights` picks them on the validation posts. `encoder`: the
    hashtag side's fitted encoder (`hashtag_side.run_hashtag_encoder`), else fitted at `fit`.
    """

    def __init__(
        self,
        network: MishonNetwork,
        inputs: ModelInputs,
        name: str = "MISHON live",
        refresh_every: int = 1,
        weights: LiveWeights | dict[str, float] | None = None,
        settings: EvidenceSettings | None = None,
        evidence: tuple[str, ...] = EVIDENCE,
        side: HashtagSideSettings | None = None,
        names: NameEmbedder | None = None,
        encoder: HashtagEncoder | None = None,
    ) -> None:
        self.name = name
        self.use = check_evidence(evidence)
        self.network = network
        self.inputs = inputs
        self.refresh_every = refresh_every
        self.weights = LiveWeights.of(weights).limited_to(self.use)
        self.settings = settings or EvidenceSettings()
        self.side = side or HashtagSideSettings()
        self.names = names if self.side.names else None
        if "model_outside" in self.use:
            check_names(self.side, names)
        self._encoder = encoder  # fitted at the first fit when not given: weights never change

    def fit(self, data: SplitData) -> Self:
        self.model_ = MishonRecommender(
            self.network, self.inputs, refresh_every=self.refresh_every
        ).fit(data)
        self.hashtags_ = data.posts["hashtags"].to_numpy()
        self.users_ = data.posts["user_id"].astype(str).to_numpy()
        self.known_ = KnownPosts(self.model_.fused_.cpu().numpy(), content_vectors(data))
        self.links_ = user_links(self.inputs, self.users_)
        self.side_: HashtagSide | None = None
        if "model_outside" in self.use:
            if self._encoder is None:
                self._encoder = fit_hashtag_encoder(
                    self.network,
                    self.inputs,
                    self.hashtags_,
                    np.flatnonzero(data.is_train),
                    self.side,
                    self.names,
                )
            self.side_ = HashtagSide(
                self.network, self.model_.tags, self._encoder, self.known_, self.names
            )
        self.vocabulary: set[str] = set()
        self.recorded_: dict[int, tuple[EvidenceTable, bool]] | None = None
        self.observe(np.flatnonzero(data.is_train), encode=False)
        self.vocabulary |= self.model_.vocabulary
        return self

    def observe(self, positions: np.ndarray, encode: bool = True) -> None:
        positions = np.asarray(positions, dtype=np.int64)
        if encode:
            self.model_.observe(positions)
        for position in positions.tolist():
            tags = list(self.hashtags_[position])
            if tags:  # a post without hashtags says nothing about any
                self.known_.reveal(position, self.users_[position], tags)
                self.vocabulary.update(tags)
                if self.side_ is not None:
                    self.side_.reveal(position, tags)

    def evidence(self, positions: np.ndarray) -> list[EvidenceTable]:
        """The evidence tables of the split's posts at `positions`, with what is known now."""
        if self.model_.refresh():
            self.known_.set_fused(self.model_.fused_.cpu().numpy())
            if self.side_ is not None:
                self.side_.invalidate()
        tables = []
        candidates = self.settings.model_candidates
        for start in range(0, len(positions), BLOCK):
            block = np.asarray(positions[start : start + BLOCK], dtype=np.int64)
            model = self.model_evidence(block)
            outside = (
                self.side_.outside_probabilities(self.model_.fused_[block], candidates)
                if self.side_ is not None
                else [{} for _ in block]
            )
            queries = [
                Query(
                    fused=self.known_.fused[p],
                    content=[(v[p], bool(present[p])) for v, present in self.known_.content],
                    user=self.users_[p],
                    linked=self.links_.get(self.users_[p], []),
                    model=model[i],
                    outside=outside[i],
                )
                for i, p in enumerate(block.tolist())
            ]
            tables += gather_evidence(self.known_, queries, self.settings)
        return tables

    def model_evidence(self, block: np.ndarray) -> list[dict[str, float]]:
        """The network's best hashtags of its vocabulary for the posts at `block`, with their
        probabilities."""
        fused = self.model_.fused_[block]
        count = self.settings.model_candidates
        tags = self.model_.tags
        with torch.no_grad():
            probabilities = self.network.scores(fused).softmax(dim=1)
            values, indices = probabilities.topk(min(count, len(tags)), dim=1)
        return [
            {tags[j]: v for j, v in zip(row.tolist(), value.tolist(), strict=True)}
            for row, value in zip(indices, values, strict=True)
        ]

    def recommend(self, positions: np.ndarray, k: int) -> list[list[str]]:
        positions = np.asarray(positions, dtype=np.int64)
        # which weights: whether the user has known posts before these are ranked
        known_user = [bool(self.known_.by_user.get(self.users_[p])) for p in positions]
        tables = self.evidence(positions)
        if self.recorded_ is not None:  # weight selection reads them (evaluate/live.py)
            pairs = zip(tables, known_user, strict=True)
            self.recorded_.update(zip(positions.tolist(), pairs, strict=True))
        return [
            [tag for tag, _ in table.ranked(self.weights.for_user(has), k)]
            for table, has in zip(tables, known_user, strict=True)
        ]


def user_links(inputs: ModelInputs, post_users: np.ndarray) -> dict[str, list[str]]:
    """Per user id, the user ids the graph's user-user edges link to it (none without them)."""
    matrix = next((a for (s, _, d), a in inputs.adjacency.items() if s == d == "user"), None)
    if matrix is None:
        return {}
    names = [""] * inputs.num_users
    for index, user in zip(inputs.post_user.tolist(), post_users.tolist(), strict=True):
        names[index] = user
    crow = matrix.crow_indices().cpu().numpy()
    col = matrix.col_indices().cpu().numpy()
    return {
        names[u]: [names[v] for v in col[crow[u] : crow[u + 1]]]
        for u in range(inputs.num_users)
        if crow[u + 1] > crow[u]
    }
