"""The recommendation service without HTTP: a loaded run, its featurizer and the known posts.

A post is ranked as MISHON live ranks it (`recommenders/live.py`): the inductive path gives
the model's probabilities and the post's place in the model's space; the evidence of the known
posts (every labelled post of the dataset, then every post recorded through `record`) scores
every hashtag they carry, so a hashtag recorded a moment ago for one user is recommendable to
similar posts of everybody. The weights are those MISHON live selected on the validation posts
under the stream protocol (`mishon evaluate RUN --protocol stream`), else DEFAULT_WEIGHTS.
Recorded posts are kept in SQLite and placed again when the service starts.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from mishon.config import ServeSettings
from mishon.errors import MishonError
from mishon.evaluate.evaluation import load_evaluation
from mishon.recommend.featurize import PostFeaturizer
from mishon.recommend.inductive import InductiveRecommender, NewPost
from mishon.recommenders.evidence import (
    EVIDENCE,
    EvidenceSettings,
    KnownPosts,
    Query,
    gather_evidence,
)
from mishon.recommenders.live import DEFAULT_WEIGHTS
from mishon.serve.records import PostRecords
from mishon.train.run import TrainedRun, load_run

RECORDS = "service.sqlite"
CANDIDATES = 50  # model hashtags considered beyond k


def live_weights(run: Path, loaded: TrainedRun) -> tuple[dict[str, float], str]:
    """MISHON live's weights from the run's stream evaluation, or the defaults; and whence."""
    try:
        evaluation = load_evaluation(run, loaded, "test", "stream")
    except MishonError:
        return dict(DEFAULT_WEIGHTS), "defaults (no current stream evaluation of the run)"
    for result in evaluation.results:
        if result["recommender"] == "MISHON live" and "weights" in result:
            return dict(result["weights"]), "selected on the validation posts (stream)"
    return dict(DEFAULT_WEIGHTS), "defaults (the stream evaluation has no MISHON live)"


class HashtagService:
    """Loads `run` once; `recommend` and `record` are safe to call from several threads."""

    def __init__(self, run: Path, settings: ServeSettings, dataset: Path | None = None) -> None:
        self.run = run
        self.settings = settings
        loaded = load_run(run, dataset, settings.device)
        self.recommender = InductiveRecommender(loaded)
        self.featurizer = PostFeaturizer.for_dataset(loaded.data.dataset, loaded.network.modalities)
        self.weights, self.weights_source = live_weights(run, loaded)
        self.evidence = EvidenceSettings()
        self.known = self._dataset_posts(loaded)
        self.records = PostRecords(run / RECORDS)
        self._model_lock = threading.Lock()  # torch modules, extractors and the known posts
        for record in self.records.all():
            self._place(record["user_id"], record["hashtags"], record["caption"])

    def _dataset_posts(self, loaded: TrainedRun) -> KnownPosts:
        """Every labelled post of the dataset, known with its hashtags."""
        modalities = loaded.network.modalities
        known = KnownPosts(
            self.recommender.graph_fused(), [self.recommender.pooled[m] for m in modalities]
        )
        posts = loaded.data.posts
        users = posts["user_id"].astype(str).tolist()
        for row, tags in enumerate(posts["hashtags"]):
            if len(tags):
                known.reveal(row, users[row], list(tags))
        return known

    def _place(self, user_id: str, hashtags: list[str], caption: str | None) -> None:
        """A recorded post joins the known posts: by its caption's place when it has one."""
        fused, content = None, []
        if caption and caption.strip():
            units, _, _ = self.featurizer.featurize(None, caption)
            placed = self.recommender.recommend(NewPost(units, user_id), 1)
            fused, content = placed.fused, placed.content
        self.known.add(fused, content, user_id, hashtags)

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "run": self.run.name,
            "modalities": self.recommender.network.modalities,
            "vocabulary": len(self.recommender.tags),
            "graph_posts": len(self.recommender.post_ids),
            "known_posts": int(self.known.known.sum()),
            "recorded_posts": self.records.count(),
            "weights": self.weights,
            "weights_source": self.weights_source,
        }

    def recommend(
        self, video: Path | None, caption: str | None, user_id: str | None, k: int
    ) -> dict[str, Any]:
        """Top-k hashtags with scores, reasons, neighbours, notes and stage timings."""
        started = time.perf_counter()
        with self._model_lock:
            units, timings, notes = self.featurizer.featurize(video, caption)
            clock = time.perf_counter()
            result = self.recommender.recommend(NewPost(units, user_id), k + CANDIDATES)
            timings["graph_and_model_s"] = time.perf_counter() - clock
            clock = time.perf_counter()
            query = Query(result.fused, result.content, user_id, dict(result.hashtags))
            table = gather_evidence(self.known, [query], self.evidence)[0]
            history = dict(self.known.history.get(user_id, {})) if user_id else {}
            timings["known_posts_s"] = time.perf_counter() - clock
        weights = np.array([self.weights.get(name, 0.0) for name in EVIDENCE])
        scores = table.values @ weights
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], table.hashtags[i]))[:k]
        hashtags = []
        for i in order:
            tag = table.hashtags[i]
            evidence = dict(zip(EVIDENCE, table.values[i].tolist(), strict=True))
            hashtags.append(
                {
                    "hashtag": tag,
                    "score": round(float(scores[i]), 6),
                    "reasons": _reasons(tag, evidence, history, result.reasons.get(tag, [])),
                    "evidence": {name: round(v, 4) for name, v in evidence.items() if v},
                }
            )
        timings["total_s"] = time.perf_counter() - started
        return {
            "hashtags": hashtags,
            "user_known": result.user_known,
            "modalities": list(units),
            "neighbours": [n.__dict__ for n in result.neighbours],
            "notes": notes,
            "timings_s": {name: round(value, 4) for name, value in timings.items()},
        }

    def record(
        self, user_id: str, hashtags: list[str], caption: str | None, post_id: str | None
    ) -> str:
        """Record a post (SQLite first, so nothing is lost) and make it known at once."""
        post_id = self.records.add(user_id, hashtags, caption, post_id)
        with self._model_lock:
            self._place(user_id, hashtags, caption)
        return post_id


def _reasons(
    tag: str, evidence: dict[str, float], history: dict[str, int], model: list[str]
) -> list[str]:
    """Short reasons for one recommended hashtag, strongest evidence first."""
    why = []
    if history.get(tag):
        why.append(f"the user chose it in {history[tag]} known post(s)")
    if evidence["neighbours"] > 0:
        why.append(f"{evidence['neighbours']:.0%} of the weight of the most similar posts")
    why += model
    if not why and evidence["popularity"] > 0:
        why.append("one of the most used hashtags")
    return why
