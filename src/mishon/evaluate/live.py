"""Selecting MISHON live's evidence weights on the validation posts, under a protocol."""

from __future__ import annotations

from mishon.data.split_data import SplitData
from mishon.evaluate.protocols import rank_under
from mishon.recommenders.live import LiveMishon, select_weights


def select_live_weights(live: LiveMishon, data: SplitData, protocol: str, k: int = 5) -> float:
    """Set `live.weights` to those with the best validation F1@k under `protocol`; returns it.

    The validation posts are ranked as the protocol ranks test posts: knowing the training
    posts and, under stream, the validation posts before each one. Then `live` is fitted
    again, so an evaluation starts from the training posts only.
    """
    live.fit(data)
    live.recorded_ = {}
    rank_under(live, data, "valid", protocol, k)
    cases = data.cases("valid")
    tables = [live.recorded_[int(p)] for p in cases]
    truth = [set(tags) for tags in data.posts["hashtags"].to_numpy()[cases]]
    live.weights, score = select_weights(tables, truth, k, use=live.use)
    live.recorded_ = None
    live.fit(data)
    return score
