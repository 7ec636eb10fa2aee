"""Selecting how MISHON live ranks on the validation posts, under a protocol: its evidence
weights, and whether a learned second stage ranks instead."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mishon.config import SecondStageSettings
from mishon.data.split_data import SplitData
from mishon.errors import MishonError
from mishon.evaluate.protocols import Progress, rank_under
from mishon.metrics import f1_from_hits
from mishon.recommenders.evidence import EVIDENCE, EvidenceTable
from mishon.recommenders.live import LiveMishon, LiveWeights, select_weights
from mishon.recommenders.second_stage import LearnedRanker

MIN_GROUP_POSTS = 100  # validation posts a group needs for weights of its own


@dataclass
class LiveSelection:
    """What `select_live_weights` chose: the validation F1@k the weights reach per group of
    posts, and the second stage's record (which ranker, and each one's F1@k per fold)."""

    reached: dict[str, float] = field(default_factory=dict)
    second_stage: dict[str, Any] = field(default_factory=dict)


def select_live_weights(
    live: LiveMishon,
    data: SplitData,
    protocol: str,
    k: int = 5,
    second_stage: SecondStageSettings | None = None,
    progress: Progress | None = None,
) -> LiveSelection:
    """Set `live.weights` to those with the best validation F1@k under `protocol` (see
    `group_weights`), then `live.ranker` to a learned ranker where `second_stage` says so
    (`choose_second_stage`; None: the weights rank). Without validation posts the weights
    stay as they are and nothing is learned.

    The validation posts are ranked as the protocol ranks test posts: knowing the training
    posts and, under stream, the validation posts before each one; under known-past each half
    of them knowing the other half too (`_cross_fitted`). Then `live` is fitted again, so an
    evaluation starts from the training posts only.
    """
    live.ranker = None
    cases = data.cases("valid")
    if not len(cases):  # nothing to select on: the weights stay as they are
        live.fit(data)
        return LiveSelection()
    recorded = validation_tables(live, data, protocol, k, progress)
    tables, has = [t for t, _ in recorded], [h for _, h in recorded]
    truth = [set(tags) for tags in data.posts["hashtags"].to_numpy()[cases]]
    live.weights, reached = group_weights(tables, has, truth, live.use, k)
    users = data.posts["user_id"].astype(str).to_numpy()[cases]
    live.ranker, record = choose_second_stage(
        tables, has, truth, users, live.use, second_stage or SecondStageSettings(), k
    )
    live.recorded_ = None
    live.fit(data)
    return LiveSelection(reached, record)


def group_weights(
    tables: list[EvidenceTable],
    has_known_posts: list[bool],
    truth: list[set[str]],
    use: tuple[str, ...],
    k: int = 5,
) -> tuple[LiveWeights, dict[str, float]]:
    """Weights with the best F1@k on these posts (`select_weights`), chosen apart for posts of
    users with known posts and of users without (when at least MIN_GROUP_POSTS posts are of
    that kind; else the other group's, or one set for all); and the F1@k each reaches."""
    chosen: dict[bool, dict[str, float]] = {}
    reached: dict[str, float] = {}
    for group in (True, False):
        rows = [i for i, has in enumerate(has_known_posts) if has == group]
        if len(rows) < MIN_GROUP_POSTS:
            continue
        mine = [tables[i] for i in rows]
        chosen[group], score = select_weights(mine, [truth[i] for i in rows], k, use=use)
        reached["known_user" if group else "new_user"] = round(score, 4)
    if not chosen:  # too few of either: one set of weights for all
        weights, score = select_weights(tables, truth, k, use=use)
        chosen = {True: weights, False: weights}
        reached["all"] = round(score, 4)
    known = chosen.get(True, chosen.get(False, {}))
    return LiveWeights(known, chosen.get(False, known)), reached


def choose_second_stage(
    tables: list[EvidenceTable],
    has_known_posts: list[bool],
    truth: list[set[str]],
    users: np.ndarray,
    use: tuple[str, ...],
    settings: SecondStageSettings,
    k: int = 5,
) -> tuple[LearnedRanker | None, dict[str, Any]]:
    """The learned ranker to rank with (None: the weights), fitted on all these validation
    posts, and the record of the choice. The posts are split in `settings.folds` folds by
    user (no user on both sides); on each, the weight search and the learned ranker are fitted
    on the other folds and scored (F1@k) on it. Mode auto keeps the learned ranker only where
    it is better on every fold: a choice that holds on each held-out part, not on average."""
    record: dict[str, Any] = {"mode": settings.mode}
    if settings.mode == "search":
        return None, record | {"chosen": "search"}
    if set(use) != set(EVIDENCE):  # the trees would read the evidence the ablation leaves out
        return None, record | {"chosen": "search", "note": "an evidence ablation: the weights"}
    fold = user_folds(users, settings.folds)
    scores: dict[str, list[float]] = {"search": [], "learned": []}
    present = sorted(set(fold.tolist()))
    if len(present) < 2:
        record["note"] = "the validation posts' users all fall in one fold: nothing to compare"
        present = []
    for held in present:
        fit = np.flatnonzero(fold != held).tolist()
        test = np.flatnonzero(fold == held).tolist()
        weights, _ = group_weights(
            [tables[i] for i in fit], [has_known_posts[i] for i in fit],
            [truth[i] for i in fit], use, k,
        )  # fmt: skip
        ranked = [tables[i].ranked(weights.for_user(has_known_posts[i]), k) for i in test]
        scores["search"].append(_f1(ranked, [truth[i] for i in test], k))
        try:
            learned = LearnedRanker.fit(
                [tables[i] for i in fit], [has_known_posts[i] for i in fit],
                [truth[i] for i in fit], settings,
            )  # fmt: skip
        except MishonError as exc:
            scores["learned"].append(0.0)
            record["note"] = f"fold {held}: {exc}"
            continue
        ranked = [tables[i].top(learned.scores(tables[i], has_known_posts[i]), k) for i in test]
        scores["learned"].append(_f1(ranked, [truth[i] for i in test], k))
    record["folds_f1_at_5"] = {name: [round(v, 4) for v in f1] for name, f1 in scores.items()}
    better = bool(scores["search"]) and all(
        learned > search
        for learned, search in zip(scores["learned"], scores["search"], strict=True)
    )
    if settings.mode == "auto" and not better:
        return None, record | {"chosen": "search"}
    try:
        ranker = LearnedRanker.fit(tables, has_known_posts, truth, settings)
    except MishonError as exc:
        if settings.mode == "learned":
            raise MishonError(f"second_stage.mode=learned: {exc}") from None
        return None, record | {"chosen": "search", "note": str(exc)}
    return ranker, record | {"chosen": "learned"}


def user_folds(users: np.ndarray, folds: int) -> np.ndarray:
    """Each post's fold from its user id (a stable hash): a user's posts share one fold."""
    return np.array([zlib.crc32(str(user).encode("utf-8")) % folds for user in users])


def _f1(ranked: list[list[tuple[str, float]]], truth: list[set[str]], k: int) -> float:
    found = np.array(
        [sum(tag in true for tag, _ in row[:k]) for row, true in zip(ranked, truth, strict=True)],
        dtype=np.float64,
    )
    return f1_from_hits(found, np.array([len(t) for t in truth], dtype=np.float64), k)


def validation_tables(
    live: LiveMishon,
    data: SplitData,
    protocol: str,
    k: int = 5,
    progress: Progress | None = None,
) -> list[tuple[EvidenceTable, bool]]:
    """Each validation case's evidence table (in `data.cases("valid")` order) and whether its
    user had known posts, ranked as the protocol ranks test posts (see select_live_weights)."""
    cases = data.cases("valid")
    if protocol == "known-past":
        return _cross_fitted(live, data, cases, k)
    live.fit(data)
    live.recorded_ = {}
    rank_under(live, data, "valid", protocol, k, progress)  # progress: under stream
    return [live.recorded_[int(p)] for p in cases]


def _cross_fitted(
    live: LiveMishon, data: SplitData, cases: np.ndarray, k: int
) -> list[tuple[EvidenceTable, bool]]:
    """Known-past validation rankings made as test posts are ranked: each half of the
    validation posts knowing the training posts and the other half. A test post knows every
    validation post, whose states the network was not fitted to (unlike the training posts',
    which it saw with their hashtags); validation posts knowing training posts only would favour
    the network's own evidence more than test posts can."""
    halves = (cases[0::2], cases[1::2])
    recorded: dict[int, tuple[EvidenceTable, bool]] = {}
    for ranked, known in (halves, halves[::-1]):
        live.fit(data)
        live.recorded_ = {}
        if len(known):
            live.observe(known)
        live.recommend(ranked, k)
        recorded.update(live.recorded_)
    return [recorded[int(p)] for p in cases]
