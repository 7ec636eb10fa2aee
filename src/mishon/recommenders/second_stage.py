"""MISHON live's learned second stage: a LightGBM LambdaRank model over a post's evidence.

MISHON live ranks a post's candidate hashtags from their evidence (`evidence.py`). The first
way is a weighted sum whose weights a coordinate-ascent search picks on validation posts
(`live.select_weights`); this module is the second: a ranker learned from the same evidence
values and whether the post's user has known posts, with gradient-boosted trees and the
LambdaRank objective (pairs of candidates of one post, weighted by their effect on NDCG). Which
of the two ranks a run's posts is chosen on validation posts (`evaluate/live.py`).

The model is kept as LightGBM's text format (no pickle), beside the evaluation that chose it,
and checked on loading: its features must be `FEATURES`, its bytes those the evaluation
recorded.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from mishon.config import SecondStageSettings
from mishon.data.store import atomic_path
from mishon.errors import MishonError
from mishon.recommenders.evidence import EVIDENCE, EvidenceTable

FEATURES = (*EVIDENCE, "user_has_known_posts")


def feature_rows(table: EvidenceTable, has_known_posts: bool) -> np.ndarray:
    """The ranker's input for a table's candidates [candidates, len(FEATURES)]."""
    flag = np.full((len(table.hashtags), 1), float(has_known_posts))
    return np.hstack([np.asarray(table.values, dtype=np.float64), flag])


def _by_name(table: EvidenceTable) -> EvidenceTable:
    order = sorted(range(len(table.hashtags)), key=table.hashtags.__getitem__)
    return EvidenceTable([table.hashtags[i] for i in order], np.asarray(table.values)[order])


def _lightgbm() -> Any:
    try:
        import lightgbm  # 1.4 s to import: only where a ranker is fitted or loaded
    except ImportError as exc:  # a dependency of mishon; an install missing it is broken
        raise MishonError(f"the learned second stage needs lightgbm: {exc}") from None
    return lightgbm


class LearnedRanker:
    """A LambdaRank model scoring a post's candidates from their evidence (higher is better;
    the scores rank one post's candidates and mean nothing across posts)."""

    def __init__(self, booster: Any) -> None:
        self.booster = booster

    @classmethod
    def fit(
        cls,
        tables: list[EvidenceTable],
        has_known_posts: list[bool],
        truth: list[set[str]],
        settings: SecondStageSettings | None = None,
    ) -> LearnedRanker:
        """Fit on posts' evidence tables (a candidate's label: it is one of the post's true
        hashtags); a MishonError when no candidate is a true hashtag."""
        settings = settings or SecondStageSettings()
        # each table's candidates in one order (by name): the trees must not depend on the
        # order the evidence named them in, which follows set iteration (a process's hash seed)
        tables = [_by_name(table) for table in tables]
        rows = [i for i, table in enumerate(tables) if table.hashtags]
        labels = [
            np.array([tag in truth[i] for tag in tables[i].hashtags], dtype=np.int32) for i in rows
        ]
        if not any(label.any() for label in labels):
            raise MishonError("no candidate of these posts is a true hashtag: nothing to learn")
        lightgbm = _lightgbm()
        data = lightgbm.Dataset(
            np.vstack([feature_rows(tables[i], has_known_posts[i]) for i in rows]),
            np.concatenate(labels),
            group=[len(tables[i].hashtags) for i in rows],
            feature_name=list(FEATURES),
            params={"verbosity": -1},
        )
        params = {
            "objective": "lambdarank",
            "num_leaves": settings.leaves,
            "learning_rate": settings.learning_rate,
            "min_data_in_leaf": settings.min_child_samples,
            "seed": settings.seed,
            "deterministic": True,  # the same posts give the same trees
            "force_row_wise": True,
            "verbosity": -1,
        }
        return cls(lightgbm.train(params, data, num_boost_round=settings.trees))

    def scores(self, table: EvidenceTable, has_known_posts: bool) -> np.ndarray:
        """One score per candidate of `table`."""
        if not table.hashtags:
            return np.zeros(0)
        # one thread: a post's few hundred candidates cost less than waking a thread pool
        return self.booster.predict(feature_rows(table, has_known_posts), num_threads=1)

    def to_text(self) -> str:
        return self.booster.model_to_string()

    @classmethod
    def from_text(cls, text: str, where: str) -> LearnedRanker:
        """A ranker from LightGBM's text format, refused (naming `where`) when it cannot be
        read or does not read `FEATURES`."""
        lightgbm = _lightgbm()
        try:
            booster = lightgbm.Booster(model_str=text)
        except lightgbm.basic.LightGBMError as exc:
            raise MishonError(f"{where}: not a LightGBM model ({exc})") from None
        if tuple(booster.feature_name()) != FEATURES:
            raise MishonError(
                f"{where}: the ranker reads {booster.feature_name()}, not {list(FEATURES)}"
            )
        return cls(booster)

    def save(self, path: Path) -> str:
        """Write the ranker to `path` (atomically); returns the SHA-256 of what was written."""
        data = self.to_text().encode("utf-8")
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        return hashlib.sha256(data).hexdigest()

    @classmethod
    def load(cls, path: Path, sha256: str, again: str) -> LearnedRanker:
        """The ranker saved at `path`, refused unless its bytes have the `sha256` the evaluation
        that chose it recorded (`again`: the command that writes both anew)."""
        if not path.is_file():
            raise MishonError(f"{path} is missing: rerun `{again}`")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise MishonError(f"{path} is not the ranker its evaluation chose: rerun `{again}`")
        return cls.from_text(data.decode("utf-8"), str(path))
