"""The recommendation service without HTTP: a loaded run, its featurizer and the post records.

Scores: the model's probability, blended with the user's recorded hashtags (share
`history_weight`) and those of recently recorded posts (share `popularity_weight`); a share
whose source is empty goes back to the model. Recorded hashtags outside the model's
vocabulary can be recommended too: that is how new hashtags enter before a retraining.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from mishon.config import ServeSettings
from mishon.recommend.featurize import PostFeaturizer
from mishon.recommend.inductive import InductiveRecommender, NewPost
from mishon.serve.records import PostRecords
from mishon.train.run import load_run

RECORDS = "service.sqlite"
CANDIDATES = 50  # model hashtags considered beyond k before blending


def _distribution(counts: Counter[str]) -> dict[str, float]:
    total = sum(counts.values())
    return {t: c / total for t, c in counts.items()} if total else {}


class HashtagService:
    """Loads `run` once; `recommend` and `record` are safe to call from several threads."""

    def __init__(self, run: Path, settings: ServeSettings, dataset: Path | None = None) -> None:
        self.run = run
        self.settings = settings
        loaded = load_run(run, dataset, settings.device)
        self.recommender = InductiveRecommender(loaded)
        self.featurizer = PostFeaturizer.for_dataset(loaded.data.dataset, loaded.network.modalities)
        self.records = PostRecords(run / RECORDS)
        self._model_lock = threading.Lock()  # torch modules and extractors: one post at a time

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "run": self.run.name,
            "modalities": self.recommender.network.modalities,
            "vocabulary": len(self.recommender.tags),
            "graph_posts": len(self.recommender.post_ids),
            "recorded_posts": self.records.count(),
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
        user_recorded = self.records.user_counts(user_id) if user_id else Counter()
        history = _distribution(user_recorded)
        recent = _distribution(self.records.recent_counts())
        w_history = self.settings.history_weight if history else 0.0
        w_recent = self.settings.popularity_weight if recent else 0.0
        w_model = 1.0 - w_history - w_recent
        model = dict(result.hashtags)
        candidates = set(model) | set(history) | set(recent)
        scored = {
            t: w_model * model.get(t, 0.0)
            + w_history * history.get(t, 0.0)
            + w_recent * recent.get(t, 0.0)
            for t in candidates
        }
        top = sorted(scored.items(), key=lambda item: (-item[1], item[0]))[:k]
        hashtags = []
        for tag, score in top:
            reasons = list(result.reasons.get(tag, []))
            if user_recorded.get(tag):
                reasons.insert(0, f"the user chose it in {user_recorded[tag]} recorded post(s)")
            if tag not in model and not user_recorded.get(tag):
                reasons.append("popular in recently recorded posts")
            hashtags.append({"hashtag": tag, "score": round(score, 6), "reasons": reasons})
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
        return self.records.add(user_id, hashtags, caption, post_id)
