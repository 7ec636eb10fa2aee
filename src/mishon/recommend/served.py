"""A trained run made ready to rank new posts, loaded once in one place.

The service, `mishon recommend` and `api.HashtagRecommender` all rank with what `load_served`
builds: the run (checked by `load_run`), MISHON live's one ranker (`recommenders/live.py`,
`LiveMishon.from_run`) with the weights and second stage of the run's stream evaluation (else
the default weights), every labelled post of the dataset known to it, and the dataset's own
extractors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mishon.errors import MishonError
from mishon.evaluate.evaluation import selected_ranking
from mishon.recommend.featurize import PostFeaturizer
from mishon.recommenders.evidence import EvidenceSettings
from mishon.recommenders.live import LiveMishon, PlacementName
from mishon.train.run import TrainedRun, load_run


def check_post(
    video: Path | None, caption: str | None, k: object, sound: str | None = None
) -> None:
    """What `mishon recommend` and the Python API check of a new post before any work (the
    service answers the same cases with 422): a whole k >= 1, a video, a caption or a sound,
    a video that is a file."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise MishonError(f"k must be a whole number of at least 1, not {k!r}")
    if video is None and not (caption and caption.strip()) and not (sound and sound.strip()):
        raise MishonError(
            "give the post's video, caption or sound, or several (--video, --caption, --sound)"
        )
    if video is not None and not video.exists():
        raise MishonError(f"video {video} does not exist")
    if video is not None and not video.is_file():
        raise MishonError(f"video {video} is not a file")


@dataclass
class ServedRun:
    """A run directory loaded for new posts: the run, its ranker and its featurizer."""

    path: Path
    run: TrainedRun
    ranker: LiveMishon
    featurizer: PostFeaturizer
    weights_source: str  # where the ranker's weights (and learned ranker) come from


def load_served(
    run: Path,
    dataset: Path | None = None,
    device: str = "cpu",
    evidence: EvidenceSettings | None = None,
    featurizer: PostFeaturizer | None = None,
    know_dataset: bool = True,
    placement: PlacementName = "graph",
    keep_in: Path | None = None,
) -> ServedRun:
    """Load `run` for new posts: the ranker knows every labelled post of the dataset (their
    hashtags the network's hashtag inputs too, encoded once; `know_dataset` False: the
    training posts only, as the static protocol), ranks as MISHON live under the stream
    protocol, and the featurizer runs the dataset's extractors (`featurizer` reuses one
    already loaded, as a reload of the service does). `placement` new places new posts among
    the training posts only, as `mishon evaluate --placement new` places its posts. `keep_in`:
    where a hashtag side fitted now is kept (the service's state folder), else the run."""
    loaded = load_run(run, dataset, device)
    chosen = selected_ranking(run, loaded)
    ranker = LiveMishon.from_run(
        loaded,
        chosen.weights,
        refresh_every=0,
        settings=evidence,
        placement=placement,
        keep_in=keep_in,
        ranker=chosen.ranker,
    )
    ranker.fit(loaded.data)
    if know_dataset:
        ranker.know_dataset()
    featurizer = featurizer or PostFeaturizer.for_dataset(
        loaded.data.dataset, loaded.network.modalities, device
    )
    return ServedRun(run, loaded, ranker, featurizer, chosen.source)
