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

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self

import numpy as np
import torch

from mishon.data.split_data import SplitData
from mishon.errors import MishonError
from mishon.features.store import FeatureStore, modality_dir
from mishon.graph.pooled import pooled_vectors_and_centre
from mishon.metrics import f1_from_hits
from mishon.model.inference import FrozenLinear
from mishon.model.inputs import ModelInputs
from mishon.model.network import MishonNetwork
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
    run_hashtag_encoder,
)
from mishon.recommenders.inductive import (
    InductiveRecommender,
    NewPost,
    Placement,
    Recommendation,
)
from mishon.recommenders.mishon import MishonRecommender
from mishon.recommenders.second_stage import LearnedRanker
from mishon.train.run import TrainedRun

WEIGHT_GRID = (0.0, 0.01, 0.03, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0, 5.0)
ANCHOR = "neighbours"  # its weight stays 1: scores are compared, not their scale
DEFAULT_WEIGHTS = {"model": 1.0, "neighbours": 1.0, "own_posts": 0.3, "history": 0.1,
                   "content": 1.0, "popularity": 0.03, "linked_users": 0.1,
                   "model_outside": 1.0, "sound": 0.3}  # fmt: skip
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

    @classmethod
    def read(cls, data: object, where: str) -> LiveWeights:
        """Weights as an evaluation file stores them ({known_user: {...}, new_user: {...}}),
        checked: known evidence names, finite numbers >= 0, not all 0; else a MishonError
        naming `where` and the key."""
        if not isinstance(data, dict) or set(data) != {"known_user", "new_user"}:
            raise MishonError(f"{where}: weights must have known_user and new_user")
        groups = {}
        for group in ("known_user", "new_user"):
            weights = data[group]
            if not isinstance(weights, dict):
                raise MishonError(f"{where}: weights.{group} is not a mapping")
            for name, value in weights.items():
                if name not in EVIDENCE:
                    raise MishonError(f"{where}: weights.{group}.{name}: unknown evidence")
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise MishonError(f"{where}: weights.{group}.{name}: {value!r} is not a number")
                if not math.isfinite(value) or value < 0:
                    raise MishonError(f"{where}: weights.{group}.{name}: {value} is not >= 0")
            if not any(weights.values()):
                raise MishonError(f"{where}: weights.{group}: every weight is 0")
            groups[group] = {name: float(value) for name, value in weights.items()}
        return cls(groups["known_user"], groups["new_user"])

    def for_user(self, has_known_posts: bool) -> dict[str, float]:
        return self.known_user if has_known_posts else self.new_user

    def limited_to(self, use: tuple[str, ...]) -> LiveWeights:
        """These weights with every evidence outside `use` at 0."""

        def limited(weights: dict[str, float]) -> dict[str, float]:
            return {n: weights.get(n, 0.0) if n in use else 0.0 for n in EVIDENCE}

        return LiveWeights(limited(self.known_user), limited(self.new_user))


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
    # ties broken by hashtag, as `EvidenceTable.top` breaks them, whatever the candidates' order
    names = [np.argsort(np.argsort(np.array(table.hashtags, dtype=object))) for table in tables]

    def f1(weights: np.ndarray) -> float:
        found = np.zeros(len(tables))
        for i, table in enumerate(tables):
            scores = table.values @ weights
            top = np.lexsort((names[i], -scores))[:k]
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


PlacementName = Literal["graph", "new"]
# modality -> (vectors, present, centre)
Pooled = dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]


class LiveMishon:
    """A trained network ranking every known hashtag with its live evidence (see module): the
    one MISHON-live ranker, behind `mishon evaluate`, `mishon serve`, `mishon recommend` and
    the Python API alike.

    Evaluation contract: `fit` encodes the graph and makes the training posts known; `observe`
    reveals more posts of the split (their hashtags also become the network's hashtag inputs,
    encoded again every `refresh_every` posts, as `MishonRecommender` does; 0: once before the
    first ranking, the service's view); `recommend` ranks posts of the split. New posts:
    `rank_new` places a post that is not in the graph through the inductive path
    (`inductive.py`) and ranks it with the same candidates, evidence and weights; `add` makes
    such a post known (the service's recorded posts). `placement="new"` ranks the split's posts
    too as new posts placed among the training posts, so an evaluation measures exactly what
    `rank_new` gives.

    `weights` (LiveWeights, or one dict for all posts) default to DEFAULT_WEIGHTS; only the
    `evidence` named count (an ablation leaves some out); `evaluate.live.select_live_weights`
    picks them on the validation posts, and there chooses between them and a `ranker`
    (`second_stage.py`, learned from the same evidence), which ranks instead where given.
    `encoder`: the hashtag side's fitted encoder (`hashtag_side.run_hashtag_encoder`), else
    fitted at `fit`. `run`: the loaded run, needed
    for new posts (`from_run` gives it). `pooled`: the split's pooled content per modality
    (vectors, present, centre), else read from the feature stores at `fit`.
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
        run: TrainedRun | None = None,
        placement: PlacementName = "graph",
        pooled: Pooled | None = None,
        ranker: LearnedRanker | None = None,
    ) -> None:
        self.name = name
        self.ranker = ranker
        self.pooled = pooled
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
        self.run = run
        if placement not in ("graph", "new"):
            raise MishonError(f"placement must be graph or new, not {placement!r}")
        if placement == "new" and run is None:
            raise MishonError("placing posts as new posts needs the run (LiveMishon.from_run)")
        self.placement = placement

    @classmethod
    def from_run(
        cls,
        run: TrainedRun,
        weights: LiveWeights | dict[str, float] | None = None,
        evidence: tuple[str, ...] = EVIDENCE,
        refresh_every: int = 1,
        settings: EvidenceSettings | None = None,
        side: HashtagSideSettings | None = None,
        names: NameEmbedder | None = None,
        placement: PlacementName = "graph",
        keep_in: Path | None = None,
        ranker: LearnedRanker | None = None,
    ) -> LiveMishon:
        """The ranker of a loaded run (on the run's device). Given `weights` (and no learned
        `ranker`) that give `model_outside` no weight, that evidence is left out (nothing to
        fit); otherwise the
        hashtag side's encoder is loaded from the run directory, or fitted and kept there (or
        in `keep_in`, see `run_hashtag_encoder`)."""
        use = check_evidence(evidence)
        if weights is not None and ranker is None:  # a ranker reads every evidence
            chosen = LiveWeights.of(weights)
            if not any(w.get("model_outside") for w in (chosen.known_user, chosen.new_user)):
                use = tuple(e for e in use if e != "model_outside") or use
        side = side or HashtagSideSettings()
        encoder = None
        if "model_outside" in use:
            encoder, _ = run_hashtag_encoder(run, side, names if side.names else None, keep_in)
        return cls(
            run.network,
            run.inputs,
            refresh_every=refresh_every,
            weights=weights,
            settings=settings,
            evidence=use,
            side=side,
            names=names,
            encoder=encoder,
            run=run,
            placement=placement,
            ranker=ranker,
        )

    # ----------------------------------------------------------------- knowledge

    def fit(self, data: SplitData) -> Self:
        self.model_ = MishonRecommender(
            self.network, self.inputs, refresh_every=self.refresh_every
        ).fit(data)
        self.output_ = FrozenLinear.of(self.network)
        self.data_ = data
        self.hashtags_ = data.posts["hashtags"].to_numpy()
        self.users_ = data.posts["user_id"].astype(str).to_numpy()
        self.sounds_ = post_sounds(data)
        self.pooled_ = self.pooled or {
            m: pooled_vectors_and_centre(
                FeatureStore.open(modality_dir(data.dataset, m)), data.rows
            )
            for m in self.network.modalities
        }
        content = [self.pooled_[m][:2] for m in self.network.modalities]
        self.known_ = KnownPosts(self.model_.fused_.cpu().numpy(), content, self.settings.index)
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
                self.network, self.model_.tags_, self._encoder, self.known_, self.names
            )
        self.inductive_: InductiveRecommender | None = None
        self.placed_: dict[int, tuple[np.ndarray, list[tuple[np.ndarray, bool]]]] = {}
        self.vocabulary: set[str] = set()
        self.recorded_: dict[int, tuple[EvidenceTable, bool]] | None = None
        self.observe(np.flatnonzero(data.is_train), encode=False)
        self.vocabulary |= self.model_.vocabulary
        return self

    def know_dataset(self) -> None:
        """Make every labelled post of the split known, as a deployed recommender knows every
        post published before (their hashtags become hashtag inputs, encoded now)."""
        labelled = self.data_.posts["hashtags"].str.len().to_numpy() > 0
        self.observe(np.flatnonzero(labelled & ~self.data_.is_train))
        self.refresh()

    def observe(self, positions: np.ndarray, encode: bool = True) -> None:
        positions = np.asarray(positions, dtype=np.int64)
        if encode:
            self.model_.observe(positions)
        for position in positions.tolist():
            tags = list(self.hashtags_[position])
            if tags:  # a post without hashtags says nothing about any
                self._place_known(position)
                self.known_.reveal(position, self.users_[position], tags, self.sounds_[position])
                self.vocabulary.update(tags)
                if self.side_ is not None:
                    self.side_.reveal(position, tags)

    def _place_known(self, position: int) -> None:
        """A post ranked as a new post becomes known where that ranking placed it."""
        placed = self.placed_.get(position)
        if placed is None:
            return
        fused, content = placed
        self.known_.fused[position] = fused
        for (vectors, present), (vector, has) in zip(self.known_.content, content, strict=True):
            vectors[position], present[position] = vector, has

    def refresh(self) -> None:
        """Encode the graph again if the network's refresh is due (see `refresh_every`)."""
        if self.model_.refresh():
            self.known_.set_fused(self.model_.fused_.cpu().numpy())
            for position in self.placed_:
                if self.known_.known[position]:
                    self._place_known(position)
            if self.side_ is not None:
                self.side_.invalidate()
            self.inductive_ = None  # its cached states are the old encoding's

    def add(self, post: NewPost, hashtags: list[str]) -> int:
        """A post of `post.user_id` that is not in the graph joins the known posts with its
        chosen hashtags, placed by its content (a post without any counts for its user's
        history and popularity only); returns its row."""
        fused, content = None, []
        if post.units:
            placed = self.inductive().place(post)
            fused, content = placed.fused[0].cpu().numpy(), placed.content
        row = self.known_.add(fused, content, post.user_id or "", hashtags, post.sound)
        self.vocabulary.update(hashtags)
        if self.side_ is not None:
            self.side_.reveal(row, hashtags)
        return row

    # ----------------------------------------------------------------- ranking

    def inductive(self) -> InductiveRecommender:
        """The inductive path over the network's current encoding (built on first use)."""
        if self.run is None:
            raise MishonError("ranking new posts needs the run (LiveMishon.from_run)")
        if self.inductive_ is None:
            searchable = self.data_.is_train if self.placement == "new" else None
            self.inductive_ = InductiveRecommender(
                self.run, self.pooled_, self.model_.layer_states(), searchable
            )
        return self.inductive_

    def model_evidence(
        self, fused: torch.Tensor, scores: torch.Tensor | None = None
    ) -> list[dict[str, float]]:
        """The network's best `model_candidates` hashtags of its vocabulary for each fused
        vector [B, d], with their probabilities (`scores`: its logits, if computed)."""
        count = self.settings.model_candidates
        tags = self.model_.tags_
        with torch.no_grad():
            if scores is None:
                scores = self.output_(fused)
            probabilities = scores.softmax(dim=1)
            values, indices = probabilities.topk(min(count, len(tags)), dim=1)
        return [
            {tags[j]: v for j, v in zip(row.tolist(), value.tolist(), strict=True)}
            for row, value in zip(indices, values, strict=True)
        ]

    def _queries(
        self,
        fused: torch.Tensor,
        content: list[list[tuple[np.ndarray, bool]]],
        users: list[str | None],
        linked: list[list[str]],
        sounds: list[str | None],
    ) -> list[Query]:
        """The queries of a block of posts: the same candidates and evidence for graph posts
        and new posts."""
        scores = self.output_(fused)
        model = self.model_evidence(fused, scores)
        outside = (
            self.side_.outside_probabilities(fused, self.settings.model_candidates, scores)
            if self.side_ is not None
            else [{} for _ in users]
        )
        vectors = fused.cpu().numpy()
        return [
            Query(vectors[i], content[i], users[i], model[i], linked[i], outside[i], sounds[i])
            for i in range(len(users))
        ]

    def evidence(self, positions: np.ndarray) -> list[EvidenceTable]:
        """The evidence tables of the split's posts at `positions`, with what is known now."""
        self.refresh()
        tables = []
        for start in range(0, len(positions), BLOCK):
            block = np.asarray(positions[start : start + BLOCK], dtype=np.int64)
            if self.placement == "new":
                tables += [self._new_table(self._stored_post(p), p)[0] for p in block.tolist()]
                continue
            users = [self.users_[p] for p in block.tolist()]
            queries = self._queries(
                self.model_.fused_[block],
                [[(v[p], bool(present[p])) for v, present in self.known_.content] for p in block],
                list(users),
                [self.links_.get(u, []) for u in users],
                [self.sounds_[p] for p in block.tolist()],
            )
            tables += gather_evidence(self.known_, queries, self.settings)
        return tables

    def _new_table(
        self, post: NewPost, position: int | None = None
    ) -> tuple[EvidenceTable, Placement]:
        """The evidence table of a post placed by the inductive path (and, for a post of the
        split ranked as new, where it was placed, kept for when it becomes known)."""
        placed = self.inductive().place(post)
        if placed.user is not None:  # a graph user: the graph's links
            linked = self.links_.get(post.user_id or "", [])
        else:  # a new user: the popular users the path linked it to
            linked = [n.id for n in placed.linked]
        query = self._queries(
            placed.fused, [placed.content], [post.user_id], [linked], [post.sound]
        )[0]
        if position is not None:
            self.placed_[position] = (query.fused / max(np.linalg.norm(query.fused), 1e-12),
                                      placed.content)  # fmt: skip
        return gather_evidence(self.known_, [query], self.settings)[0], placed

    def _stored_post(self, position: int) -> NewPost:
        """A post of the split as a new post: its units from the feature stores."""
        if not hasattr(self, "stores_"):
            self.stores_ = {
                m: FeatureStore.open(modality_dir(self.data_.dataset, m))
                for m in self.network.modalities
            }
        row = int(self.data_.rows[position])
        units = {}
        for modality, store in self.stores_.items():
            mask = np.asarray(store.mask[row], dtype=bool)
            if mask.any():
                units[modality] = (np.asarray(store.values[row], dtype=np.float32), mask)
        return NewPost(units, str(self.users_[position]), self.sounds_[position])

    def ranked(self, positions: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """The top-`k` (hashtag, score) of the split's posts at `positions`, best first."""
        positions = np.asarray(positions, dtype=np.int64)
        # which weights: whether the user has known posts before these are ranked
        known_user = [bool(self.known_.by_user.get(self.users_[p])) for p in positions]
        tables = self.evidence(positions)
        if self.recorded_ is not None:  # weight selection reads them (evaluate/live.py)
            pairs = zip(tables, known_user, strict=True)
            self.recorded_.update(zip(positions.tolist(), pairs, strict=True))
        return [self._top(table, has, k) for table, has in zip(tables, known_user, strict=True)]

    def _top(self, table: EvidenceTable, has_known_posts: bool, k: int) -> list[tuple[str, float]]:
        """A table's top-`k` by the learned ranker where there is one, else by the weights."""
        if self.ranker is None:
            return table.ranked(self.weights.for_user(has_known_posts), k)
        return table.top(self.ranker.scores(table, has_known_posts), k)

    def recommend(self, positions: np.ndarray, k: int) -> list[list[str]]:
        return [[tag for tag, _ in row] for row in self.ranked(positions, k)]

    def rank_new(self, post: NewPost, k: int = 10, explain: int = 5) -> Recommendation:
        """Top-`k` hashtags of a post that is not in the graph, by weighted evidence, each with
        its evidence values and reasons; an unknown `post.user_id` is a new user."""
        has_posts = bool(post.user_id and self.known_.by_user.get(post.user_id))
        self.refresh()
        table, placed = self._new_table(post)
        top = self._top(table, has_posts, k)
        tags = [tag for tag, _ in top]
        graph_reasons = self.inductive().reasons(tags, placed, history=False)
        history: dict[str, int] = self.known_.history.get(post.user_id, {}) if post.user_id else {}
        row = dict(zip(table.hashtags, range(len(table.hashtags)), strict=True))
        reasons, evidence = {}, {}
        for tag in tags:
            values = dict(zip(EVIDENCE, table.values[row[tag]].tolist(), strict=True))
            evidence[tag] = {name: round(v, 4) for name, v in values.items() if v}
            reasons[tag] = _reasons(tag, values, history, graph_reasons.get(tag, []))
        return Recommendation(
            top,
            placed.user is not None,
            placed.found[: explain * 2] + placed.linked,
            reasons,
            placed.fused[0].cpu().numpy(),
            placed.content,
            evidence,
        )


def _reasons(
    tag: str, evidence: dict[str, float], history: dict[str, int], graph: list[str]
) -> list[str]:
    """Short reasons for one recommended hashtag, strongest evidence first: the user's known
    posts, the nearest known posts, the graph's (similar graph posts, linked popular users)."""
    why = []
    if history.get(tag):
        why.append(f"the user chose it in {history[tag]} known post(s)")
    if evidence["neighbours"] > 0:
        why.append(f"{evidence['neighbours']:.0%} of the weight of the most similar posts")
    why += graph
    if evidence["model_outside"] > 0:
        why.append(
            f"the network gives it {evidence['model_outside']:.1%} from the known posts that "
            "carry it (outside its training vocabulary)"
        )
    if evidence["sound"] > 0:
        why.append(f"{evidence['sound']:.0%} of the known posts with this sound carry it")
    if not why and evidence["popularity"] > 0:
        why.append("one of the most used hashtags")
    return why


def post_sounds(data: SplitData) -> list[str | None]:
    """Each post's sound identity (the importer's, `data.sounds`), None where it names none."""
    if "sound" not in data.posts:
        return [None] * len(data.posts)
    return [s if isinstance(s, str) and s else None for s in data.posts["sound"].tolist()]


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
