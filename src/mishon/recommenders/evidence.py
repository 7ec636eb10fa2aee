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
  (`hashtag_side.py`) from the known posts that carry it (0 for the vocabulary's);
- `sound`: the share of the known posts with the post's sound (its identity, `data.sounds`)
  that carry it, over every such post of every user: the trend that travels with a sound
  (0 for a post that names no sound).

Candidates are the hashtags any evidence names (the model's best `model_candidates` of each
kind, the `popular_candidates` most used, the `sound_candidates` most carried with the sound).
A linear combination, or a learned ranker, ranks them (`recommenders/live.py`,
`second_stage.py`).

The nearest known posts (`neighbours`, `content`) come from an exact scan of every known post
while there are at most `EvidenceIndexSettings.exact_max` of them, else from a growing IVF index
per space (`index.py`) whose candidates are re-scored exactly: a query then costs about
nprobe / sqrt(N) of a scan, and a post made known is found by the next query.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter

import numpy as np

from mishon.config import EvidenceIndexSettings, EvidenceSettings
from mishon.recommenders.index import GrowingIndex

GROW_MIN = 1024  # rows of room added at least when `KnownPosts.add` runs out

__all__ = [
    "EVIDENCE",
    "EvidenceSettings",
    "EvidenceTable",
    "KnownPosts",
    "Query",
    "gather_evidence",
]

EVIDENCE = (
    "model",
    "neighbours",
    "own_posts",
    "history",
    "content",
    "popularity",
    "linked_users",
    "model_outside",
    "sound",
)


@dataclass
class LinkedHistory:
    """What the known posts of a group of users (a user's linked users) say together."""

    ids: np.ndarray  # the hashtag ids the group carries, sorted
    sums: np.ndarray  # per id, the group's known posts that carry it
    posts: int  # the group's known posts
    best: list[str]  # the most carried hashtags, most first (ties: first seen in the group)

    def counts(self, ids: np.ndarray) -> np.ndarray:
        """The group's count of each hashtag id of `ids` (0 where none; -1: no hashtag)."""
        return _values_at(self.ids, self.sums, ids)


@dataclass
class Shares:
    """Per hashtag id (sorted) that some rows carry, the share of the rows' weight on it."""

    ids: np.ndarray
    values: np.ndarray

    def of(self, ids: np.ndarray) -> np.ndarray:
        """The share of each hashtag id of `ids` (0 where none; -1: no hashtag)."""
        return _values_at(self.ids, self.values, ids)


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
    sound: str | None = None  # the sound's identity


class KnownPosts:
    """The posts whose hashtags are known: their vectors, users and hashtags, growing.

    Rows are added as posts become known (`add`); `reveal` marks rows that are already stored
    (an evaluation stores every post of the split up front and reveals them as the protocol
    allows). Unrevealed rows are never read. Beyond `index.exact_max` known rows with vectors,
    the nearest rows are searched in indexes (`nearest_fused`, `nearest_content`), which take in
    the rows revealed since the last search before they answer.
    """

    def __init__(
        self,
        fused: np.ndarray,
        content: list[tuple[np.ndarray, np.ndarray]],
        index: EvidenceIndexSettings | None = None,
    ) -> None:
        """`fused` [N, d] and `content` ([N, D], present [N]) per modality, for rows 0..N-1."""
        self.index_settings = index or EvidenceIndexSettings()
        self.fused = _unit_rows(fused)
        self.content = [(v.astype(np.float32), p.astype(bool)) for v, p in content]
        self.known = np.zeros(len(fused), dtype=bool)
        self.size = len(fused)  # rows stored; the arrays may hold room for more
        self.placed = np.ones(len(fused), dtype=bool)  # has vectors: can be a neighbour
        self.by_user: dict[str, list[int]] = defaultdict(list)
        self.history: dict[str, Counter[str]] = defaultdict(Counter)
        self.uses: Counter[str] = Counter()
        self.most_uses = 0  # of any hashtag
        self.sound_history: dict[str, Counter[str]] = defaultdict(Counter)
        self.sound_posts: Counter[str] = Counter()  # known posts per sound identity
        self._popular: list[str] | None = None
        self.searchable = 0  # known rows with vectors: what the nearest-row searches cover
        self._fused_index: GrowingIndex | None = None
        self._content_index: list[GrowingIndex | None] = [None] * len(self.content)
        self._unindexed: list[int] = []  # searchable rows the indexes have not taken in yet
        self.tag_ids: dict[str, int] = {}  # every known hashtag's id, in order of first use
        self.tag_names: list[str] = []
        self.use_counts = np.zeros(0, np.float64)  # `uses` by hashtag id
        # each revealed row's hashtag ids: (start, count) in a flat array, row after row
        self._tags_at = np.zeros((len(fused), 2), np.int64)
        self._tag_flat = np.zeros(0, np.int64)
        self._tag_flat_size = 0
        self._user_tags: dict[str, tuple[int, np.ndarray, np.ndarray]] = {}  # see `_tags_of`

    def __len__(self) -> int:
        return self.size

    @property
    def approximate(self) -> bool:
        """Whether the nearest known rows come from the indexes (beyond `exact_max`)."""
        return self.searchable > self.index_settings.exact_max

    def set_fused(self, fused: np.ndarray) -> None:
        """New fused vectors for the stored rows (the model encoded the graph again)."""
        self.fused[: len(fused)] = _unit_rows(fused)
        self._fused_index = None  # built again from the new vectors at the next search

    def reveal(
        self,
        row: int,
        user: str,
        hashtags: list[str] | tuple[str, ...],
        sound: str | None = None,
    ) -> None:
        """Row `row` is now known: its user, hashtags and sound count from here on."""
        if self.known[row]:
            return
        self.known[row] = True
        if self.placed[row]:
            self.searchable += 1
            self._unindexed.append(row)
        self.by_user[user].append(row)
        self.history[user].update(set(hashtags))
        ids = []
        for tag in hashtags:
            tag_id = self.tag_ids.get(tag)
            if tag_id is None:
                tag_id = self.tag_ids[tag] = len(self.tag_names)
                self.tag_names.append(tag)
                self.use_counts = _with_room(self.use_counts, tag_id + 1)
            self.use_counts[tag_id] += 1
            ids.append(tag_id)
        start = self._tag_flat_size
        self._tag_flat = _with_room(self._tag_flat, start + len(ids))
        self._tag_flat[start : start + len(ids)] = ids
        self._tags_at[row] = (start, len(ids))
        self._tag_flat_size += len(ids)
        self.uses.update(hashtags)
        self.most_uses = max(self.most_uses, *(self.uses[t] for t in hashtags), 0)
        self._popular = None
        if sound:
            self.sound_history[sound].update(set(hashtags))
            self.sound_posts[sound] += 1

    def add(
        self,
        fused: np.ndarray | None,
        content: list[tuple[np.ndarray, bool]],
        user: str,
        hashtags: list[str],
        sound: str | None = None,
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
        self.size += 1
        self.reveal(row, user, hashtags, sound)
        return row

    def extend(
        self,
        fused: np.ndarray,
        content: list[tuple[np.ndarray, np.ndarray]],
        users: list[str],
        hashtags: list[list[str]],
        sounds: list[str | None] | None = None,
    ) -> np.ndarray:
        """Store and reveal many placed posts at once (`add`, for [n, d] fused vectors and
        ([n, D], present [n]) per modality); returns their rows."""
        count = len(fused)
        first = self.size
        room = len(self.known) - first
        if count > room:
            self._grow(max(GROW_MIN, count - room, first // 8))
        rows = np.arange(first, first + count)
        self.fused[rows] = _unit_rows(fused)
        self.placed[rows] = True
        for (vectors, present), (values, has) in zip(self.content, content, strict=True):
            vectors[rows], present[rows] = values, has
        self.size += count
        sounds = sounds if sounds is not None else [None] * count
        for row, user, tags, sound in zip(rows.tolist(), users, hashtags, sounds, strict=True):
            self.reveal(row, user, tags, sound)
        return rows

    def reserve(self, rows: int) -> None:
        """Room for `rows` posts in all, made now: adding them later copies no array (growing
        by an eighth copies every vector, for a moment twice the memory at millions of rows)."""
        if rows > len(self.known):
            self._grow(rows - len(self.known))

    def hashtags_of(self, row: int) -> tuple[str, ...]:
        """The hashtags of revealed row `row` (none for a row not revealed)."""
        start, count = self._tags_at[row]
        return tuple(self.tag_names[i] for i in self._tag_flat[start : start + count].tolist())

    def _grow(self, rows: int) -> None:
        """Room for `rows` more posts (unknown until added): a copy every `rows` additions,
        not one per post."""

        def grown(array: np.ndarray) -> np.ndarray:
            return _copied_into(array, len(array) + rows)

        self.fused = grown(self.fused)
        self.placed = grown(self.placed)
        self.known = grown(self.known)
        self._tags_at = grown(self._tags_at)
        self.content = [(grown(v), grown(p)) for v, p in self.content]

    def popular(self, count: int) -> list[str]:
        """The `count` most used hashtags, most used first (ties by name; at the cut, in first-use
        order)."""
        if self._popular is None or len(self._popular) < count:
            top = heapq.nlargest(count, self.uses.items(), key=itemgetter(1))
            self._popular = [t for t, _ in sorted(top, key=lambda x: (-x[1], x[0]))]
        return self._popular[:count]

    def shares(self, rows: np.ndarray, weights: np.ndarray) -> Shares:
        """Per hashtag that known rows `rows` carry, the share of their `weights` on the rows
        that carry it (none where the weights sum to 0)."""
        total = float(weights.sum())
        if total <= 0:
            return Shares(np.zeros(0, np.int64), np.zeros(0))
        starts, counts = self._tags_at[rows, 0], self._tags_at[rows, 1]
        ends = np.cumsum(counts)
        # each row's slice of the flat array, the slices one after another
        entries = np.repeat(starts - ends + counts, counts) + np.arange(int(ends[-1]))
        ids, inverse = np.unique(self._tag_flat[entries], return_inverse=True)
        shares = np.repeat(weights / total, counts)
        return Shares(ids, np.bincount(inverse, weights=shares, minlength=len(ids)))

    def uses_of(self, ids: np.ndarray) -> np.ndarray:
        """`uses` of each hashtag id of `ids` (-1: a hashtag no known post carries, 0 uses)."""
        counts = np.zeros(len(ids))
        carried = ids >= 0
        counts[carried] = self.use_counts[ids[carried]]
        return counts

    def linked_history(self, users: list[str], best: int) -> LinkedHistory:
        """The summed history of `users` and their `best` most carried hashtags, in the order
        of `Counter.most_common` over the users' histories added up in turn."""
        if not self._user_tags:  # every user's at the first query, as the indexes are built
            for user in list(self.history):
                self._tags_of(user)
        parts = [self._tags_of(user) for user in users]
        posts = sum(len(self.by_user.get(user, ())) for user in users)
        if not parts:
            return LinkedHistory(np.zeros(0, np.int64), np.zeros(0), posts, [])
        ids = np.concatenate([ids for ids, _ in parts])
        counts = np.concatenate([counts for _, counts in parts])
        sums = np.bincount(ids, weights=counts, minlength=len(self.tag_names))
        carried = np.flatnonzero(sums > 0)  # of a boolean: a tenth of the time of a float's
        found = sums[carried]
        return LinkedHistory(carried, found, posts, self._most_carried(ids, sums, found, best))

    def _most_carried(
        self, ids: np.ndarray, sums: np.ndarray, carried: np.ndarray, best: int
    ) -> list[str]:
        """The `best` hashtags of largest sum among `ids` (the users' history entries, user by
        user), ties by first entry: `Counter.most_common`'s order over their Counters added up
        in turn. `carried`: the sums above 0."""
        if best <= 0 or len(carried) == 0:
            return []
        # only hashtags at or above the best-th largest sum can be among the best
        cut = (
            np.partition(carried, len(carried) - best)[len(carried) - best]
            if len(carried) > best
            else 0.0
        )
        entries = np.flatnonzero(sums[ids] >= cut)
        _, first = np.unique(ids[entries], return_index=True)
        entries = entries[first]  # each such hashtag's first entry
        order = np.lexsort((entries, -sums[ids[entries]]))[:best]
        return [self.tag_names[i] for i in ids[entries[order]]]

    def _tags_of(self, user: str) -> tuple[np.ndarray, np.ndarray]:
        """A user's history as arrays (hashtag ids in the Counter's order, counts), made again
        only once the user has a new post: adding up the linked users' Counters at each query
        was its costliest part at 2,000,000 known posts (2.3 of 18 ms)."""
        stamp = len(self.by_user.get(user, ()))
        kept = self._user_tags.get(user)
        if kept is None or kept[0] != stamp:
            history = self.history.get(user, Counter())
            ids = np.fromiter(map(self.tag_ids.__getitem__, history), np.int64, len(history))
            counts = np.fromiter(history.values(), np.float64, len(history))
            kept = self._user_tags[user] = (stamp, ids, counts)
        return kept[1], kept[2]

    def _searchable_rows(self) -> np.ndarray:
        return np.flatnonzero(self.known[: self.size] & self.placed[: self.size])

    def _sync_indexes(self) -> None:
        """Build the indexes that are missing or outgrown; give the others the rows revealed
        since the last search."""
        settings = self.index_settings
        pending = np.array(self._unindexed, dtype=np.int64)
        self._unindexed = []
        rebuild_all = None
        if self._fused_index is None or self._fused_index.outgrown(len(pending)):
            rebuild_all = self._searchable_rows()
            self._fused_index = GrowingIndex(self.fused, rebuild_all, settings)
        elif len(pending):
            self._fused_index.add(self.fused[pending], pending)
        for m, (vectors, present) in enumerate(self.content):
            index = self._content_index[m]
            if index is None or index.outgrown(len(pending)):
                rows = self._searchable_rows() if rebuild_all is None else rebuild_all
                rows = rows[present[rows]]
                self._content_index[m] = (
                    GrowingIndex(vectors, rows, settings) if len(rows) else None
                )
            elif len(pending):
                rows = pending[present[pending]]
                index.add(vectors[rows], rows)

    def nearest_fused(self, queries: np.ndarray, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per unit query [d] of `queries`, (rows, cosines) of its `count` nearest known rows in
        the model's space: `refine` x `count` rows from the index, re-scored exactly; best
        first, ties by row."""
        self._sync_indexes()
        assert self._fused_index is not None
        proposed = self._fused_index.search(queries, count * self.index_settings.refine)
        found = []
        for query, ids in zip(queries, proposed, strict=True):
            rows = ids[ids >= 0]
            similarity = self.fused[rows] @ query
            order = np.lexsort((rows, -similarity))[:count]
            found.append((rows[order], similarity[order]))
        return found

    def nearest_content(
        self, queries: list[Query], count: int
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query, (rows, mean cosine over the modalities both have) of its `count` nearest
        known rows in content: each modality's index proposes `candidates` x `count` rows,
        re-scored exactly; best first, ties by row."""
        self._sync_indexes()
        want = count * self.index_settings.candidates
        proposed: list[list[np.ndarray]] = [[] for _ in queries]
        for m, index in enumerate(self._content_index):
            asking = [i for i, q in enumerate(queries) if q.content[m][1]]
            if index is None or not asking:
                continue
            block = np.stack([queries[i].content[m][0] for i in asking]).astype(np.float32)
            for i, ids in zip(asking, index.search(block, want), strict=True):
                proposed[i].append(ids[ids >= 0])
        found = []
        for query, lists in zip(queries, proposed, strict=True):
            rows = np.unique(np.concatenate(lists)) if lists else np.zeros(0, np.int64)
            total = np.zeros(len(rows), np.float32)
            shared = np.zeros(len(rows), np.float32)
            for (vectors, present), (vector, has) in zip(self.content, query.content, strict=True):
                if has and len(rows):
                    both = present[rows].astype(np.float32)
                    total += (vectors[rows] @ vector.astype(np.float32)) * both
                    shared += both
            similarity = total / np.maximum(shared, 1)
            near = _nearest(np.where(shared > 0, similarity, -np.inf), count)
            found.append((rows[near], similarity[near]))
        return found


@dataclass
class EvidenceTable:
    """Candidates of one query and their evidence [candidates, len(EVIDENCE)]."""

    hashtags: list[str]
    values: np.ndarray

    def ranked(self, weights: dict[str, float], k: int) -> list[tuple[str, float]]:
        """The top-`k` (hashtag, weighted evidence), best first, ties by hashtag."""
        return self.top(self.values @ np.array([weights.get(name, 0.0) for name in EVIDENCE]), k)

    def top(self, scores: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The top-`k` (hashtag, score) by one score per candidate, best first, ties by
        hashtag."""
        scores = np.asarray(scores)
        chosen = np.arange(len(scores))
        if 0 < k < len(scores):  # only scores at or above the k-th largest can be in the top
            cut = np.partition(scores, len(scores) - k)[len(scores) - k]
            chosen = np.flatnonzero(scores >= cut)
        order = sorted(chosen.tolist(), key=lambda i: (-scores[i], self.hashtags[i]))
        return [(self.hashtags[i], float(scores[i])) for i in order[: max(k, 0)]]


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _with_room(array: np.ndarray, size: int) -> np.ndarray:
    """`array` with room for `size` entries along its first axis: a copy every doubling, not
    one per entry."""
    if size <= len(array):
        return array
    return _copied_into(array, len(array) + max(1024, len(array), size - len(array)))


def _copied_into(array: np.ndarray, length: int) -> np.ndarray:
    """`array` at the start of a zeroed array `length` long along its first axis (a large
    one's zeroed room takes no memory until it is written: fresh pages from the kernel)."""
    bigger = np.zeros((length, *array.shape[1:]), array.dtype)
    bigger[: len(array)] = array
    return bigger


def _values_at(keys: np.ndarray, values: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """`values` of each id of `ids` by sorted `keys` (0 where an id is not among them)."""
    if len(keys) == 0:
        return np.zeros(len(ids))
    at = np.minimum(np.searchsorted(keys, ids), len(keys) - 1)
    return np.where(keys[at] == ids, values[at], 0.0)


def _column(values: Mapping[str, float], candidates: dict[str, int]) -> np.ndarray:
    """`values` of each candidate (0 where it has none), as float64 [len(candidates)];
    `candidates` maps each hashtag to its position."""
    if len(values) >= len(candidates):
        found = map(values.get, candidates, repeat(0.0))
        return np.fromiter(found, dtype=np.float64, count=len(candidates))
    # fewer values than candidates (the model's 50 among thousands): placed by position
    column = np.zeros(len(candidates))
    at = np.fromiter(map(candidates.get, values, repeat(-1)), np.int64, len(values))
    given = np.fromiter(values.values(), np.float64, len(values))
    kept = at >= 0  # a value of a hashtag that is no candidate (a sound's least carried)
    column[at[kept]] = given[kept]
    return column


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
    fused = _unit_rows(np.stack([q.fused for q in queries]))
    if known.approximate:
        nearest = known.nearest_fused(fused, settings.neighbours)
        similar = known.nearest_content(queries, settings.content_neighbours)
    else:
        nearest, similar = _scan(known, queries, fused, settings)
    popular = known.popular(settings.popular_candidates)
    scale = np.log1p(known.most_uses) if known.most_uses else 1.0
    tables = []
    for i, query in enumerate(queries):
        near, near_similarity = nearest[i]
        neighbours = known.shares(near, _exp_weights(near_similarity, settings.temperature))
        own_rows = np.array(known.by_user.get(query.user, []) if query.user else [], np.int64)
        own_count = max(len(own_rows), 1)
        # a post without content sits at cosine 0 (its fused row is zero)
        own_similarity = known.fused[own_rows] @ fused[i]
        own = known.shares(own_rows, _exp_weights(own_similarity, settings.own_temperature))
        history = known.history.get(query.user, Counter()) if query.user else Counter()
        linked = known.linked_history(query.linked, settings.linked_candidates)
        similar_rows, similar_similarity = similar[i]
        content_shares = known.shares(similar_rows, np.maximum(similar_similarity, 0.0) + 1e-6)
        sounded = known.sound_history.get(query.sound, Counter()) if query.sound else Counter()
        sound_posts = max(known.sound_posts.get(query.sound, 0), 1) if query.sound else 1
        best_model = sorted(query.model.items(), key=lambda x: (-x[1], x[0]))
        name = known.tag_names.__getitem__
        candidates = list(
            dict.fromkeys(
                [t for t, _ in best_model[: settings.model_candidates]]
                + list(map(name, neighbours.ids.tolist()))
                + list(map(name, own.ids.tolist()))
                + list(map(name, content_shares.ids.tolist()))
                + linked.best
                + list(query.outside)[: settings.model_candidates]
                + [t for t, _ in sounded.most_common(settings.sound_candidates)]
                + popular
            )
        )
        # thousands of candidates at millions of known posts (a user's whole history):
        # per-candidate work stays in C
        position = dict(zip(candidates, range(len(candidates)), strict=True))
        ids = np.fromiter(map(known.tag_ids.get, candidates, repeat(-1)), np.int64, len(candidates))
        # one column per evidence, in EVIDENCE's order
        values = np.column_stack(
            [
                _column(query.model, position),
                neighbours.of(ids),
                own.of(ids),
                _column(history, position) / own_count,
                content_shares.of(ids),
                np.log1p(known.uses_of(ids)) / scale,
                linked.counts(ids) / max(linked.posts, 1),
                _column(query.outside, position),
                _column(sounded, position) / sound_posts,
            ]
        )
        tables.append(EvidenceTable(candidates, values))
    return tables


def _scan(
    known: KnownPosts, queries: list[Query], fused: np.ndarray, settings: EvidenceSettings
) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[tuple[np.ndarray, np.ndarray]]]:
    """The exact scan: per query, (rows, similarities) of its nearest known rows in the model's
    space and in content, from its similarity to every stored row (the unknown at -inf)."""
    unknown = ~(known.known & known.placed)
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
    nearest, similar = [], []
    for i in range(len(queries)):
        near = _nearest(model_space[i], settings.neighbours)
        nearest.append((near, model_space[i, near]))
        rows = _nearest(content[i], settings.content_neighbours)
        similar.append((rows, content[i, rows]))
    return nearest, similar
