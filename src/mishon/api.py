"""MISHON from Python: every stage of the `mishon` command as one function.

    from mishon import api

    api.import_dataset("posts.csv", "my-data", format="csv", mapping={...})
    api.split("my-data", strategy="temporal")
    api.extract("my-data")
    api.train("my-data", "runs/first", assignments=["train.epochs=60"])
    evaluation = api.evaluate("runs/first", baselines="all")
    api.recommend("runs/first", caption="sunset over the sea", user_id="u1", k=5)

Settings come as keyword arguments (top-level keys of the stage's settings model), a YAML
`config` file, and dotted `assignments` such as "train.epochs=60" or "model.graph=false", merged
in that order of precedence as on the command line. Paths may be strings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mishon.config import (
    DEFAULT_REFRESH,
    ExtractSettings,
    ImportSettings,
    RunSettings,
    SplitSettings,
    SynthSettings,
    load_settings,
)
from mishon.data.importers import ImportResult
from mishon.data.importers import import_dataset as _import_dataset
from mishon.data.splits import split_dataset
from mishon.data.synth import World, generate_corpus
from mishon.evaluate.evaluation import Evaluation, evaluate_run
from mishon.features.extract import ExtractReport, extract_features
from mishon.features.store import FeatureStore, modality_dir
from mishon.graph.pooled import pooled_vectors_and_centre
from mishon.graph.pyg import save_hetero_data, to_hetero_data
from mishon.recommend.served import check_post, load_served
from mishon.recommenders.evidence import EVIDENCE
from mishon.recommenders.inductive import Recommendation
from mishon.report import write_report
from mishon.train.run import TrainedRun, load_run, train_model

PathLike = str | Path

__all__ = [
    "HashtagRecommender",
    "evaluate",
    "export_graph",
    "extract",
    "import_dataset",
    "recommend",
    "report",
    "split",
    "synth",
    "train",
]


def synth(out: PathLike, overwrite: bool = False, **settings: Any) -> World:
    """Write a synthetic micro-video corpus (SynthSettings keys: users, posts, seed, ...)."""
    return generate_corpus(Path(out), load_settings(SynthSettings, overrides=settings), overwrite)


def import_dataset(
    src: PathLike, out: PathLike, overwrite: bool = False, **settings: Any
) -> ImportResult:
    """Import a CSV / TSV / JSON-lines table (or #HowYouTagTweets) as a dataset directory.

    ImportSettings keys: format, mapping (dataset field -> column), skip_bad, ...
    """
    return _import_dataset(
        Path(src), Path(out), load_settings(ImportSettings, overrides=settings), overwrite
    )


def split(
    dataset: PathLike, name: str | None = None, overwrite: bool = False, **settings: Any
) -> dict[str, Any]:
    """Store a train / valid / test split (SplitSettings keys); returns its metadata."""
    split_name, meta = split_dataset(
        Path(dataset), load_settings(SplitSettings, overrides=settings), name, overwrite
    )
    return {"name": split_name, **meta}


def extract(
    dataset: PathLike,
    overwrite: bool = False,
    config: PathLike | None = None,
    assignments: list[str] | None = None,
    **settings: Any,
) -> ExtractReport:
    """Extract every post's visual, acoustic and textual features (ExtractSettings keys)."""
    resolved = load_settings(ExtractSettings, _path(config), settings, assignments)
    return extract_features(Path(dataset), resolved, overwrite=overwrite)


def train(
    dataset: PathLike,
    out: PathLike,
    config: PathLike | None = None,
    assignments: list[str] | None = None,
    resume: bool = False,
    **settings: Any,
) -> TrainedRun:
    """Build the graph and train MISHON into the run directory `out`; returns the best model."""
    resolved = load_settings(RunSettings, _path(config), settings, assignments)
    train_model(Path(dataset), resolved, Path(out), resume=resume)
    return load_run(Path(out), device=resolved.train.device)


def evaluate(
    run: PathLike,
    part: str = "test",
    baselines: str | list[str] | None = None,
    dataset: PathLike | None = None,
    protocol: str = "static",
    refresh_every: int = DEFAULT_REFRESH,
    live: bool = True,
    evidence: tuple[str, ...] | None = None,
    hashtag_names: bool = False,
) -> Evaluation:
    """Metrics of a run (and `baselines`: 'all' or names) on its test or valid posts under
    `protocol` (static, known-past, stream); with `live`, MISHON live's too (from the
    `evidence` named, all by default; `hashtag_names`: see `mishon evaluate --help`)."""
    return evaluate_run(
        Path(run),
        part,
        baselines,
        _path(dataset),
        protocol=protocol,
        refresh_every=refresh_every,
        live=live,
        evidence=evidence or EVIDENCE,
        hashtag_names=hashtag_names,
    )


def report(run: PathLike, dataset: PathLike | None = None, protocol: str = "static") -> Path:
    """Write RUN/report.html (after `evaluate(run, baselines=..., protocol=...)`)."""
    return write_report(Path(run), _path(dataset), protocol)


def export_graph(run: PathLike, out: PathLike, dataset: PathLike | None = None) -> Any:
    """Write the graph of the run in `run`, with its posts' pooled content, split masks and
    hashtags, to `out` as a PyG HeteroData (`graph/pyg.py`); returns it."""
    loaded = load_run(Path(run), _path(dataset), "cpu")
    graph, data = loaded.graph, loaded.data
    at = {post: i for i, post in enumerate(data.posts["post_id"].astype(str))}
    order = np.array([at[post] for post in graph.post_ids], dtype=np.int64)
    pooled = {}
    for modality in graph.modalities:
        store = FeatureStore.open(modality_dir(data.dataset, modality))
        vectors, present, _ = pooled_vectors_and_centre(store, data.rows[order])
        pooled[modality] = (vectors, present)
    hashtags = [list(tags) for tags in data.posts["hashtags"].to_numpy()[order]]
    hetero = to_hetero_data(graph, pooled, hashtags)
    save_hetero_data(hetero, Path(out))
    return hetero


class HashtagRecommender:
    """A loaded run that recommends hashtags for new posts (video and/or caption), ranked as
    MISHON live ranks them (with the weights of the run's stream evaluation, else defaults)."""

    def __init__(self, run: PathLike, dataset: PathLike | None = None, device: str = "cpu") -> None:
        self.served = load_served(Path(run), _path(dataset), device)
        self.live = self.served.ranker
        self.weights_source = self.served.weights_source
        self.featurizer = self.served.featurizer

    def recommend(
        self,
        video: PathLike | None = None,
        caption: str | None = None,
        user_id: str | None = None,
        k: int = 10,
        sound: str | None = None,
    ) -> Recommendation:
        """Top-`k` hashtags with scores and reasons; an unknown `user_id` is a new user;
        `sound` is the title or id of the sound the post uses. A MishonError for k < 1, a post
        with no video, caption or sound, or a video that is not a file."""
        check_post(_path(video), caption, k, sound)
        post, _, _ = self.featurizer.new_post(_path(video), caption, sound, user_id)
        return self.live.rank_new(post, k)


def recommend(
    run: PathLike,
    video: PathLike | None = None,
    caption: str | None = None,
    user_id: str | None = None,
    k: int = 10,
    sound: str | None = None,
) -> Recommendation:
    """One recommendation from a run (loads it each call: keep a `HashtagRecommender` for many)."""
    return HashtagRecommender(run).recommend(video, caption, user_id, k, sound)


def _path(value: PathLike | None) -> Path | None:
    return None if value is None else Path(value)
