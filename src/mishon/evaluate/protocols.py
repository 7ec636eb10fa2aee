"""What a recommender knows when it ranks a post: the evaluation protocols.

- `static`: the training posts' hashtags only (the paper's protocol).
- `known-past`: also the validation posts' hashtags, when ranking test posts (a deployed
  recommender knows every post published before; weights are not retrained).
- `stream`: as known-past, then the evaluated posts in time order (`created_at`, ties and posts
  without one in dataset order); once a post is ranked its hashtags become known, as
  `POST /v1/posts` does in the service.

Every recommender gets the same knowledge through `observe(positions)`: the posts at those
positions of the split now show their hashtags. A post never sees its own hashtags or those
of a later post (tests/test_protocols.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

import numpy as np

from mishon.data.split_data import SplitData
from mishon.errors import MishonError
from mishon.recommenders.base import Recommender

ProtocolName = Literal["static", "known-past", "stream"]
Progress = Callable[[int, int], None]  # (posts done, posts in all)
PROTOCOLS: tuple[str, ...] = get_args(ProtocolName)


def check_protocol(name: str) -> str:
    if name not in PROTOCOLS:
        raise MishonError(f"unknown protocol {name!r}; choose from {list(PROTOCOLS)}")
    return name


def known_before(data: SplitData, part: str) -> np.ndarray:
    """Labelled posts (beyond training) whose hashtags are known before `part` starts: the
    validation posts when testing, none when validating."""
    return data.cases("valid") if part == "test" else np.zeros(0, dtype=np.int64)


def stream_order(data: SplitData, positions: np.ndarray) -> np.ndarray:
    """`positions` in time order: by `created_at`, ties in dataset order; a post without a time
    keeps its place after the post before it in the dataset."""
    positions = np.asarray(positions, dtype=np.int64)
    if "created_at" not in data.posts:
        return np.sort(positions)
    times = data.posts["created_at"]
    seconds = times.astype("int64").to_numpy(dtype=np.float64) / 1e6
    known = times.notna().to_numpy()
    # a missing time takes the last known time before it in dataset order
    filled = np.where(known, seconds, np.nan)
    last = -np.inf
    for row in range(len(filled)):
        if np.isnan(filled[row]):
            filled[row] = last
        else:
            last = filled[row]
    ordered = np.lexsort((positions, filled[positions]))
    return positions[ordered]


def rank_under(
    recommender: Recommender,
    data: SplitData,
    part: str,
    protocol: str,
    k: int,
    progress: Progress | None = None,
) -> list[list[str]]:
    """Top-`k` lists for the labelled posts of `part` (in `data.cases(part)` order);
    `progress(done, total)` is told of each post ranked under stream (one at a time)."""
    cases = data.cases(part)
    if check_protocol(protocol) == "static":
        return recommender.recommend(cases, k)
    past = known_before(data, part)
    if len(past):
        recommender.observe(past)
    if protocol == "known-past":
        return recommender.recommend(cases, k)
    ranked: dict[int, list[str]] = {}
    for done, position in enumerate(stream_order(data, cases), start=1):
        one = np.array([position], dtype=np.int64)
        ranked[int(position)] = recommender.recommend(one, k)[0]
        recommender.observe(one)
        if progress is not None:
            progress(done, len(cases))
    return [ranked[int(p)] for p in cases]
