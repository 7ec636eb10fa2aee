"""The one recommender contract every method follows, scikit-learn style.

Constructing a recommender stores its parameters and does no work; `fit(data)` learns from the
training posts of a split (and returns the recommender); `recommend(positions, k)` ranks
hashtags for posts of that split, by position; `observe(positions)` makes more posts of the
split known with their hashtags, without refitting (the evaluation protocols,
`evaluate/protocols.py`). `vocabulary` holds the hashtags it can name.
"""

from __future__ import annotations

from typing import Protocol, Self

import numpy as np

from mishon.data.split_data import SplitData


class Recommender(Protocol):
    name: str
    vocabulary: set[str]

    def fit(self, data: SplitData) -> Self: ...

    def recommend(self, positions: np.ndarray, k: int) -> list[list[str]]: ...

    def observe(self, positions: np.ndarray) -> None: ...
