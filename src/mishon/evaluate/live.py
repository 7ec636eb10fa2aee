"""Selecting MISHON live's evidence weights on the validation posts, under a protocol."""

from __future__ import annotations

import numpy as np

from mishon.data.split_data import SplitData
from mishon.evaluate.protocols import rank_under
from mishon.recommenders.evidence import EvidenceTable
from mishon.recommenders.live import LiveMishon, LiveWeights, select_weights

MIN_GROUP_POSTS = 100  # validation posts a group needs for weights of its own


def select_live_weights(
    live: LiveMishon, data: SplitData, protocol: str, k: int = 5
) -> dict[str, float]:
    """Set `live.weights` to those with the best validation F1@k under `protocol`, chosen apart
    for posts of users with known posts and of users without (when at least
    MIN_GROUP_POSTS validation posts are of that kind; else the other group's); returns the
    F1@k reached on each group (empty, the weights unchanged, without validation posts).

    The validation posts are ranked as the protocol ranks test posts: knowing the training
    posts and, under stream, the validation posts before each one; under known-past each half
    of them knowing the other half too (`_cross_fitted`). Then `live` is fitted again, so an
    evaluation starts from the training posts only.
    """
    cases = data.cases("valid")
    if not len(cases):  # nothing to select on: the weights stay as they are
        live.fit(data)
        return {}
    recorded = validation_tables(live, data, protocol, k)
    truth = [set(tags) for tags in data.posts["hashtags"].to_numpy()[cases]]
    chosen: dict[bool, dict[str, float]] = {}
    reached: dict[str, float] = {}
    for has_posts in (True, False):
        rows = [i for i, (_, has) in enumerate(recorded) if has == has_posts]
        if len(rows) < MIN_GROUP_POSTS:
            continue
        tables = [recorded[i][0] for i in rows]
        chosen[has_posts], score = select_weights(tables, [truth[i] for i in rows], k, use=live.use)
        reached["known_user" if has_posts else "new_user"] = round(score, 4)
    if not chosen:  # too few of either: one set of weights for all
        weights, score = select_weights([t for t, _ in recorded], truth, k, use=live.use)
        chosen = {True: weights, False: weights}
        reached["all"] = round(score, 4)
    live.weights = LiveWeights(
        chosen.get(True, chosen.get(False, {})), chosen.get(False, chosen.get(True, {}))
    )
    live.recorded_ = None
    live.fit(data)
    return reached


def validation_tables(
    live: LiveMishon, data: SplitData, protocol: str, k: int = 5
) -> list[tuple[EvidenceTable, bool]]:
    """Each validation case's evidence table (in `data.cases("valid")` order) and whether its
    user had known posts, ranked as the protocol ranks test posts (see select_live_weights)."""
    cases = data.cases("valid")
    if protocol == "known-past":
        return _cross_fitted(live, data, cases, k)
    live.fit(data)
    live.recorded_ = {}
    rank_under(live, data, "valid", protocol, k)
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
