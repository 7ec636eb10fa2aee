"""Baselines evaluated by the same code as MISHON (DESIGN section 6).

Each recommender is fitted on the training posts of a split (their hashtags, users, times and,
for content kNN, their features) and ranks hashtags for any post of the split. Only training
hashtags are read by `fit`; `observe(positions)` takes in more posts' hashtags as the
evaluation protocols reveal them (`evaluate/protocols.py`), without refitting.

- popularity: the most used training hashtags, the same list for every post;
- time-decayed popularity: each training use weighs 0.5 ** (age / half-life), the age measured
  from the last training post (in days with timestamps, else in training posts);
- user history: the user's own training hashtags by frequency (ties by recency), then
  popularity to fill the list;
- content kNN: the hashtags of the m most similar training posts, weighted by similarity, where
  similarity is the mean over modalities of the cosine of pooled, centred features;
- sound: the hashtags of the known posts with the post's sound (data.sounds) by frequency (ties
  by recency), then popularity to fill the list.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Self

import numpy as np
import torch

from mishon.data.split_data import SplitData
from mishon.errors import MishonError
from mishon.features.store import MANIFEST, FeatureStore, modality_dir
from mishon.graph.pooled import pooled_vectors
from mishon.recommenders.base import Recommender

RESCALE_AFTER = 512.0  # half-lives: 2 ** 512 is far from float64's limit


def _ranked(counts: Counter[str] | dict[str, float], k: int) -> list[str]:
    return [tag for tag, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:k]]


class Popularity:
    name = "popularity"

    def fit(self, data: SplitData) -> Self:
        self.hashtags_ = data.posts["hashtags"].to_numpy()
        self.counts_: Counter[str] = Counter()
        self.vocabulary: set[str] = set()
        self.observe(np.flatnonzero(data.is_train))
        return self

    def observe(self, positions: np.ndarray) -> None:
        """The posts at `positions` now show their hashtags (evaluation protocols)."""
        for position in positions:
            self.counts_.update(self.hashtags_[position])
        self.vocabulary.update(self.counts_)

    def top(self, k: int) -> list[str]:
        return _ranked(self.counts_, k)

    def recommend(self, positions: np.ndarray, k: int) -> list[list[str]]:
        top = self.top(k)
        return [top for _ in positions]


class DecayedPopularity(Popularity):
    """Each use weighs 0.5 ** (age / half-life), the age from the latest known post.

    Scores are kept relative to a reference time: a later post weighs 2 ** (half-lives since
    the reference), which differs from the decayed weight by a factor common to all hashtags
    (no ranking changes); every RESCALE_AFTER half-lives the scores are brought back to 1.
    """

    name = "decayed popularity"

    def __init__(self, half_life_days: float = 14.0, half_life_posts: float = 0.1) -> None:
        self.half_life_days = half_life_days
        self.half_life_posts = half_life_posts  # share of training posts, without timestamps

    def fit(self, data: SplitData) -> Self:
        train = data.is_train
        self.hashtags_ = data.posts["hashtags"].to_numpy()
        self.timed_ = "created_at" in data.posts and data.posts["created_at"].notna().all()
        if self.timed_:
            self.times_ = data.time_key() / 86400.0  # days
            self.half_life_ = self.half_life_days
        else:
            # without timestamps the clock counts known posts, in dataset order
            self.times_ = np.zeros(len(train))
            self.half_life_ = max(1.0, self.half_life_posts * int(train.sum()))
        self.clock_ = 0.0
        self.reference_ = -np.inf
        self.counts_ = defaultdict(float)  # type: ignore[assignment]
        self.vocabulary = set()
        self.observe(np.flatnonzero(train))
        return self

    def observe(self, positions: np.ndarray) -> None:
        for position in positions:
            if self.timed_:
                when = float(self.times_[position])
            else:
                self.clock_ += 1.0
                when = self.clock_
            if not np.isfinite(self.reference_):
                self.reference_ = when
            exponent = (when - self.reference_) / self.half_life_
            if exponent > RESCALE_AFTER:  # keep the weights of later posts finite
                for tag in self.counts_:
                    self.counts_[tag] *= 0.5**exponent
                self.reference_, exponent = when, 0.0
            weight = 2.0**exponent  # 0.5 ** (age / half-life), up to a common factor
            for tag in self.hashtags_[position]:
                self.counts_[tag] += weight
                self.vocabulary.add(tag)


class GroupHistory:
    """The hashtags of the known posts of the post's group (a user, a sound) by frequency, ties
    by recency, then popularity to fill the list. Subclasses name the group's column."""

    column = "user_id"

    def fit(self, data: SplitData) -> Self:
        self.popularity_ = Popularity().fit(data)
        self.vocabulary = self.popularity_.vocabulary
        groups = data.posts.get(self.column)
        self.groups_ = (
            np.full(len(data.posts), None, dtype=object)
            if groups is None
            else groups.astype(object).where(groups.notna(), None).to_numpy()
        )
        self.hashtags_ = data.posts["hashtags"].to_numpy()
        self.times_ = data.time_key()
        self.history_: dict[str, dict[str, tuple[int, float]]] = defaultdict(dict)
        self._add(np.flatnonzero(data.is_train))
        return self

    def observe(self, positions: np.ndarray) -> None:
        self.popularity_.observe(positions)
        self._add(positions)

    def _add(self, positions: np.ndarray) -> None:
        for position in positions:
            group, time = self.groups_[position], self.times_[position]
            if group is None:
                continue
            for tag in self.hashtags_[position]:
                count, last = self.history_[group].get(tag, (0, -np.inf))
                self.history_[group][tag] = (count + 1, max(last, time))

    def recommend(self, positions: np.ndarray, k: int) -> list[list[str]]:
        fallback = self.popularity_.top(k + 50)
        lists = []
        for position in positions:
            group = self.groups_[position]
            own = self.history_.get(group, {}) if group is not None else {}
            ranked = [
                t
                for t, _ in sorted(
                    own.items(), key=lambda item: (-item[1][0], -item[1][1], item[0])
                )
            ]
            seen = set(ranked[:k])
            ranked = ranked[:k] + [t for t in fallback if t not in seen][: max(0, k - len(ranked))]
            lists.append(ranked)
        return lists


class UserHistory(GroupHistory):
    name = "user history"
    column = "user_id"


class SoundHistory(GroupHistory):
    name = "sound"
    column = "sound"


def content_vectors(data: SplitData) -> list[tuple[np.ndarray, np.ndarray]]:
    """(pooled centred unit vectors [N, D], present [N]) of each modality the split's posts
    have features of (in visual, acoustic, textual order)."""
    found = []
    for modality in ("visual", "acoustic", "textual"):
        folder = modality_dir(data.dataset, modality)
        if (folder / MANIFEST).is_file():
            vectors, present = pooled_vectors(FeatureStore.open(folder), data.rows)
            if present.any():
                found.append((vectors, present))
    return found


class ContentKNN:
    name = "content kNN"

    def __init__(self, neighbours: int = 20) -> None:
        self.neighbours = neighbours

    def fit(self, data: SplitData) -> Self:
        self.vectors_ = content_vectors(data)
        if not self.vectors_:
            raise MishonError(f"content kNN needs features: run `mishon extract {data.dataset}`")
        self.labelled_ = data.posts["hashtags"].str.len().to_numpy() > 0
        self.train_ = np.flatnonzero(data.is_train & self.labelled_)
        self.tags_ = data.posts["hashtags"].to_numpy()
        self.vocabulary = {t for i in self.train_ for t in self.tags_[i]}
        return self

    def observe(self, positions: np.ndarray) -> None:
        """Labelled posts at `positions` join the neighbours a post can draw on."""
        added = np.asarray(positions, dtype=np.int64)
        added = added[self.labelled_[added]]
        self.train_ = np.concatenate([self.train_, added])
        self.vocabulary.update(t for i in added for t in self.tags_[i])

    def similarity(self, positions: np.ndarray) -> np.ndarray:
        """[queries, training posts]: mean cosine over the modalities both posts have."""
        total = torch.zeros(len(positions), len(self.train_))
        count = torch.zeros(len(positions), len(self.train_))
        for vectors, present in self.vectors_:
            query = torch.from_numpy(vectors[positions])
            keys = torch.from_numpy(vectors[self.train_])
            both = (
                torch.from_numpy(present[positions]).float()[:, None]
                * torch.from_numpy(present[self.train_]).float()[None, :]
            )
            total += (query @ keys.T) * both
            count += both
        return (total / count.clamp_min(1)).numpy()

    def recommend(self, positions: np.ndarray, k: int) -> list[list[str]]:
        lists = []
        for start in range(0, len(positions), 512):
            block = positions[start : start + 512]
            sims = self.similarity(block)
            for row in range(len(block)):
                nearest = np.argsort(-sims[row], kind="stable")[: self.neighbours]
                scores: dict[str, float] = defaultdict(float)
                for j in nearest:
                    for tag in self.tags_[self.train_[j]]:
                        scores[tag] += max(float(sims[row, j]), 0.0) + 1e-6
                lists.append(_ranked(scores, k))
        return lists


COUNT_BASELINES: dict[str, Callable[[], Recommender]] = {
    "popularity": Popularity,
    "decayed": DecayedPopularity,
    "history": UserHistory,
    "sound": SoundHistory,
    "content-knn": ContentKNN,
}
