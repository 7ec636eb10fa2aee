"""The evidence for each hashtag a post could get, from everything known at that moment.

A hashtag is represented by the known posts that carry it (and the users who chose them), so a
hashtag born after training is ranked like any other as soon as one known post carries it.
For a query post (its unit vector in the model's fused space, its pooled content vectors, its
user and the model's probabilities), each candidate hashtag gets one value per evidence, each
in [0, 1]:

- `model`: the network's softmax probability over its vocabulary (0 outside it);
- `neighbours`: label propagation in the model's space: over the `neighbours` known posts
  nearest to the query's fused vector, the share of softmax(temperature * cosine) weight on
  posts that carry the hashtag;
- `own_posts`: the same over the user's own known posts (`own_temperature`);
- `history`: the share of the user's known posts that carry it;
- `content`: content kNN: the similarity-weighted share over the `content_neighbours` known
  posts nearest in pooled content (mean cosine over the modalities both posts have);
- `popularity`: log(1 + uses) / log(1 + the most uses of any hashtag);
- `linked_users`: the share of the known posts of the users the graph links to the post's
  user (user-user edges: training-hashtag Jaccard, social-influence links of cold-start users)
  that carry it;
- `model_outside`: for a known hashtag outside the vocabulary, its probability in the network's
  softmax over every known hashtag, its row made by the inductive hashtag side
  (`hashtag_side.py`) from the known posts that carry it (0 for the vocabulary's).

Candidates are the hashtags any evidence names (the model's best `model_candidates` of each
kind, the `popular_candidates` most used). A linear combination ranks them (`recommenders/live.py`).
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from operator import itemgetter

import numpy as np
from pydantic import Field

from mishon.config import Settings

GROW_MIN = 1024  # rows of room added at least when `KnownPosts.add` runs out

EVIDENCE = (
    "model",
    "neighbours",
    "own_posts",
    "history",
    "content",
    "popularity",
    "linked_users",
    "model_outside",
)


class EvidenceSettings(Settings):
    """How much of the known past each evidence reads (docs/design.md, "Live knowledge")."""

    neighbours: int = Field(100, ge=1, description="known posts nearest in the model's space")
    temperature: float = Field(
        10.0, ge=0.0, description="sharpness of the neighbours' softmax over cosine"
    )
    own_temperature: float = Field(
        5.0, ge=0.0, description="sharpness of the softmax over the user's own known posts"
    )
    content_neighbours: int = Field(30, ge=1, description="known posts nearest in content")
    model_candidates: int = Field(50, ge=1, description="the model's best hashtags considered")
    popular_candidates: int = Field(20, ge=0, description="most used hashtags considered")
    linked_candidates: int = Field(
        50, ge=0, description="hashtags most used by the linked users considered"
    )


@dataclass
class Query:
    """One post to rank: fused unit vector [d], pooled content per modality, user, model, and
    the users the graph links its user to."""

    fused: np.ndarray
    content: list[tuple[np.ndarray, bool]]
    user: str | None
    model: dict[str, float]
    linked: list[str] = field(default_factory=list)
    outside: dict[str, float] = field(default_factory=dict)  # model_outside, best first


class KnownPosts:
    """The posts whose hashtags are known: their vectors, users and hashtags, growing.

    Rows are added as posts become known (`add`); `reveal` marks rows that are already stored
    (an evaluation stores every post of the split up front and reveals them as the protocol
    allows). Unrevealed rows are never read.
    """

    def __init__(self, fused: np.ndarray, content: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """`fused` [N, d] and `content` ([N, D], present [N]) per modality, for rows 0..N-1."""
        self.fused = _unit_rows(fused)
        self.content = [(v.astype(np.float32), p.astype(bool)) for v, p in content]
        self.known = np.zeros(len(fused), dtype=bool)
        self.size = len(fused)  # rows stored; the arrays may hold room for more
        self.placed = np.ones(len(fused), dtype=bool)  # has vectors: can be a neighbour
        self.users: list[str | None] = [None] * len(fused)
        self.hashtags: list[tuple[str, ...]] = [()] * len(fused)
        self.by_user: dict[str, list[int]] = defaultdict(list)
        self.history: dict[str, Counter[str]] = defaultdict(Counter)
        self.uses: Counter[str] = Counter()
        self._popular: list[str] | None = None

    def __len__(self) -> int:
        return self.size

    def set_fused(self, fused: np.ndarray) -> None:
        """New fused vectors for the stored rows (the model encoded the graph again)."""
        self.fused[: len(fused)] = _unit_rows(fused)

    def reveal(self, row: int, user: str, hashtags: list[str] | tuple[str, ...]) -> None:
        """Row `row` is now known: its user and hashtags count from here on."""
        if self.known[row]:
            return
        self.known[row] = True
        self.users[row] = user
        self.hashtags[row] = tuple(hashtags)
        self.by_user[user].append(row)
        self.history[user].update(set(hashtags))
        self.uses.update(hashtags)
        self._popular = None

    def add(
        self,
        fused: np.ndarray | None,
        content: list[tuple[np.ndarray, bool]],
        user: str,
        hashtags: list[str],
    ) -> int:
        """Store and reveal one more post; returns its row. A post without a fused vector
        (nothing to place it by) counts for its user's history and popularity only."""
        row = self.size
        if row == len(self.known):
            self._grow(max(GROW_MIN, row // 8))
        if not content:  # nothing of any modality
            content = [(np.zeros(v.shape[1], np.float32), False) for v, _ in self.content]
        if fused is not None:
            self.fused[row] = _unit_rows(np.asarray(fused)[None])[0]
        self.placed[row] = fused is not None
        for (vectors, present), (vector, has) in zip(self.content, content, strict=True):
            vectors[row], present[row] = vector, has
        self.users.append(None)
        self.hashtags.append(())
        self.size += 1
        self.reveal(row, user, hashtags)
        return row

    def _grow(self, rows: int) -> None:
        """Room for `rows` more posts (unknown until added): a copy every `rows` additions,
        not one per post."""

        def grown(array: np.ndarray) -> np.ndarray:
            more = np.zeros((rows, *array.shape[1:]), dtype=array.dtype)
            return np.concatenate([array, more])

        self.fused = grown(self.fused)
        self.placed = grown(self.placed)
        self.known = grown(self.known)
        self.content = [(grown(v), grown(p)) for v, p in self.content]

    def popular(self, count: int) -> list[str]:
        """The `count` most used hashtags, most used first (ties by name; at the cut, in first-use
        order)."""
        if self._popular is None or len(self._popular) < count:
            top = heapq.nlargest(count, self.uses.items(), key=itemgetter(1))
            self._popular = [t for t, _ in sorted(top, key=lambda x: (-x[1], x[0]))]
        return self._popular[:count]


@dataclass
class EvidenceTable:
    """Candidates of one query and their evidence [candidates, len(EVIDENCE)]."""

    hashtags: list[str]
    values: np.ndarray

    def ranked(self, weights: dict[str, float], k: int) -> list[tuple[str, float]]:
        """The top-`k` (hashtag, weighted evidence), best first, ties by hashtag."""
        scores = self.values @ np.array([weights.get(name, 0.0) for name in EVIDENCE])
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], self.hashtags[i]))
        return [(self.hashtags[i], float(scores[i])) for i in order[:k]]


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _shares(
    rows: np.ndarray, weights: np.ndarray, hashtags: list[tuple[str, ...]]
) -> dict[str, float]:
    """Per hashtag, the share of `weights` on the rows that carry it."""
    total = float(weights.sum())
    shares: dict[str, float] = defaultdict(float)
    if total <= 0:
        return shares
    for row, weight in zip(rows.tolist(), (weights / total).tolist(), strict=True):
        for tag in hashtags[row]:
            shares[tag] += weight
    return shares


def _exp_weights(values: np.ndarray, temperature: float) -> np.ndarray:
    """exp(temperature * value), shifted by the maximum: softmax weights before `_shares`
    normalises them."""
    if len(values) == 0:
        return values
    scaled = temperature * (values - values.max())
    return np.exp(scaled)


def _nearest(similarity: np.ndarray, count: int) -> np.ndarray:
    """Indices of the `count` largest finite values, best first (ties by index)."""
    finite = np.flatnonzero(np.isfinite(similarity))
    if len(finite) > count:
        part = np.argpartition(-similarity[finite], count - 1)[:count]
        finite = finite[part]
    order = np.lexsort((finite, -similarity[finite]))
    return finite[order]


def gather_evidence(
    known: KnownPosts, queries: list[Query], settings: EvidenceSettings
) -> list[EvidenceTable]:
    """The evidence table of each query against the known posts (none of them is the query)."""
    if len(queries) == 0:
        return []
    # similarities to every stored row, the unknown ones at -inf: no copy of the known rows
    unknown = ~(known.known & known.placed)
    fused = _unit_rows(np.stack([q.fused for q in queries]))
    model_space = fused @ known.fused.T
    model_space[:, unknown] = -np.inf
    content_sum = np.zeros_like(model_space)
    content_count = np.zeros_like(model_space)
    for modality, (vectors, present) in enumerate(known.content):
        query_vectors = np.stack([q.content[modality][0] for q in queries]).astype(np.float32)
        query_present = np.array([q.content[modality][1] for q in queries], dtype=np.float32)
        both = query_present[:, None] * present[None, :].astype(np.float32)
        content_sum += (query_vectors @ vectors.T) * both
        content_count += both
    content_count[:, unknown] = 0
    content = np.where(content_count > 0, content_sum / np.maximum(content_count, 1), -np.inf)
    popular = known.popular(settings.popular_candidates)
    most_uses = max(known.uses.values(), default=0)
    scale = np.log1p(most_uses) if most_uses else 1.0
    tables = []
    for i, query in enumerate(queries):
        near = _nearest(model_space[i], settings.neighbours)
        neighbours = _shares(
            near, _exp_weights(model_space[i, near], settings.temperature), known.hashtags
        )
        own_rows = np.array(known.by_user.get(query.user, []) if query.user else [], np.int64)
        own_count = max(len(own_rows), 1)
        # a post without content sits at cosine 0 (its fused row is zero)
        own_similarity = known.fused[own_rows] @ fused[i]
        own = _shares(
            own_rows, _exp_weights(own_similarity, settings.own_temperature), known.hashtags
        )
        history = known.history.get(query.user, Counter()) if query.user else Counter()
        linked: Counter[str] = Counter()
        for other in query.linked:
            linked.update(known.history.get(other, {}))
        linked_posts = max(sum(len(known.by_user.get(o, ())) for o in query.linked), 1)
        similar = _nearest(content[i], settings.content_neighbours)
        content_shares = _shares(
            similar, np.maximum(content[i, similar], 0.0) + 1e-6, known.hashtags
        )
        best_model = sorted(query.model.items(), key=lambda x: (-x[1], x[0]))
        candidates = list(
            dict.fromkeys(
                [t for t, _ in best_model[: settings.model_candidates]]
                + list(neighbours)
                + list(own)
                + list(content_shares)
                + [t for t, _ in linked.most_common(settings.linked_candidates)]
                + list(query.outside)[: settings.model_candidates]
                + popular
            )
        )
        values = np.array(
            [
                (
                    query.model.get(t, 0.0),
                    neighbours.get(t, 0.0),
                    own.get(t, 0.0),
                    history.get(t, 0) / own_count,
                    content_shares.get(t, 0.0),
                    np.log1p(known.uses.get(t, 0)) / scale,
                    linked.get(t, 0) / linked_posts,
                    query.outside.get(t, 0.0),
                )
                for t in candidates
            ],
            dtype=np.float64,
        ).reshape(len(candidates), len(EVIDENCE))
        tables.append(EvidenceTable(candidates, values))
    return tables
