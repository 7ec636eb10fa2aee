"""The recommendation service without HTTP: a loaded run, its featurizer and the known posts.

A post is ranked as MISHON live ranks it (`recommenders/live.py`, the ranker `mishon evaluate`
measures, loaded by `recommend/served.py`): the inductive path gives
the model's probabilities and the post's place in the model's space; the evidence of the known
posts (every labelled post of the dataset, then every post recorded through `record`) scores
every hashtag they carry, so a hashtag recorded a moment ago for one user is recommendable to
similar posts of everybody. The weights are those MISHON live selected on the validation posts
under the stream protocol (`mishon evaluate RUN --protocol stream`), else the defaults.
Recorded posts are kept in SQLite with their captions' extracted units and placed again from
them when the service starts (no extractor runs for them).
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mishon.config import ServeSettings
from mishon.recommend.served import ServedRun, load_served
from mishon.recommenders.inductive import NewPost
from mishon.serve.records import PostRecords

RECORDS = "service.sqlite"


class HashtagService:
    """Loads `run` once; `recommend` and `record` are safe to call from several threads."""

    def __init__(
        self,
        run: Path,
        settings: ServeSettings,
        dataset: Path | None = None,
        served: ServedRun | None = None,
    ) -> None:
        """`served`: the run already loaded (`recommend.served.load_served`), else loaded."""
        self.run = run
        self.settings = settings
        self.served = served or load_served(run, dataset, settings.device, settings.evidence)
        self.live = self.served.ranker
        self.weights_source = self.served.weights_source
        self.featurizer = self.served.featurizer
        self.records = PostRecords(run / RECORDS)
        self._model_lock = threading.Lock()  # torch modules, extractors and the known posts
        for record in self.records.all():
            units = record["units"]
            if units is None:  # recorded before units were kept
                units = self._units(record["caption"])
            self.live.add(NewPost(units, record["user_id"]), record["hashtags"])

    def _units(self, caption: str | None) -> dict[str, Any]:
        return self.featurizer.featurize(None, caption)[0] if caption and caption.strip() else {}

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "run": self.run.name,
            "modalities": self.live.network.modalities,
            "vocabulary": len(self.live.model_.tags),
            "graph_posts": self.live.inputs.num_posts,
            "known_posts": int(self.live.known_.known.sum()),
            "recorded_posts": self.records.count(),
            "weights": asdict(self.live.weights),
            "weights_source": self.weights_source,
        }

    def recommend(
        self, video: Path | None, caption: str | None, user_id: str | None, k: int
    ) -> dict[str, Any]:
        """Top-k hashtags with scores, evidence, reasons, neighbours, notes and stage timings."""
        started = time.perf_counter()
        with self._model_lock:
            units, timings, notes = self.featurizer.featurize(video, caption)
            clock = time.perf_counter()
            result = self.live.rank_new(NewPost(units, user_id), k)
            timings["graph_model_and_evidence_s"] = time.perf_counter() - clock
        timings["total_s"] = time.perf_counter() - started
        if video is not None:  # no server path in an answer
            notes = [note.replace(f"{video.parent}/", "") for note in notes]
        return {
            **result.as_dict(),
            "modalities": list(units),
            "notes": notes,
            "timings_s": {name: round(value, 4) for name, value in timings.items()},
        }

    def record(
        self, user_id: str, hashtags: list[str], caption: str | None, post_id: str | None
    ) -> str:
        """Record a post with its caption's units (SQLite first, so nothing is lost) and make
        it known at once, by its caption's place when it has one."""
        with self._model_lock:
            units = self._units(caption)
        post_id = self.records.add(user_id, hashtags, caption, post_id, units or None)
        with self._model_lock:
            self.live.add(NewPost(units, user_id), hashtags)
        return post_id
