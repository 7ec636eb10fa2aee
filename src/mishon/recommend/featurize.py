"""Features of one new post (a video file, a caption, a sound) with the extractors of a run's
dataset.

Each modality uses the extractor, unit count and weights recorded in the dataset's feature
store manifest, and rounded to float16 as the stores keep them, so a new post's units are
those of a stored post of the same content. Hashtags written in the caption are taken out of
the text first, and a sound title becomes its identity (the per-author rule of "original
sound" labels, with the labels the dataset was imported with), as the importers do.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from mishon.data.hashtags import extract_from_caption
from mishon.data.sounds import SoundNamer
from mishon.data.store import read_manifest
from mishon.errors import MishonError
from mishon.features.base import Extractor, Modality
from mishon.features.jobs import DecodeRequest, decode_post
from mishon.features.registry import extractor_of_store, input_field
from mishon.recommenders.inductive import NewPost


class PostFeaturizer:
    """Runs extractors (one per modality) on one post; `for_dataset` matches a dataset's.

    Safe to call from several threads: decoding runs in parallel, each extractor serves one
    call at a time (a tokenizer or model may keep state between calls)."""

    def __init__(
        self,
        extractors: dict[str, Extractor],
        max_audio_s: float = 60.0,
        sounds: SoundNamer | None = None,
    ) -> None:
        self.extractors = extractors
        self.sounds = sounds or SoundNamer()
        self._locks = {modality: threading.Lock() for modality in extractors}
        self.request = DecodeRequest.for_extractors(
            extractors.get("visual"), extractors.get("acoustic"), max_audio_s
        )
        self.fields = {m: input_field(e, Modality(m)) for m, e in extractors.items()}

    @classmethod
    def for_dataset(
        cls, dataset: Path, modalities: list[str], device: str = "cpu"
    ) -> PostFeaturizer:
        """The extractors, unit counts and weights that made the dataset's feature stores."""
        titles = read_manifest(dataset).get("source", {}).get("original_sound_titles", [])
        extractors = {m: extractor_of_store(dataset, m, device) for m in modalities}
        return cls(extractors, sounds=SoundNamer(titles))

    def sound_identity(self, sound: str | None, user_id: str | None) -> str | None:
        """The identity of a post's sound as the importer names it (an "original sound" label
        becomes the author's own), None without a sound."""
        return self.sounds.identity(sound, user_id or "")

    def new_post(
        self,
        video: Path | None,
        caption: str | None,
        sound: str | None = None,
        user_id: str | None = None,
    ) -> tuple[NewPost, dict[str, float], list[str]]:
        """The post as the ranker takes it (its units, user and sound identity), with the
        seconds per stage and the notes of `featurize`."""
        units, timings, notes = self.featurize(video, caption, sound, user_id)
        return NewPost(units, user_id, self.sound_identity(sound, user_id)), timings, notes

    def featurize(
        self,
        video: Path | None,
        caption: str | None,
        sound: str | None = None,
        user_id: str | None = None,
    ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, float], list[str]]:
        """(units per modality, seconds per stage, notes) for one post; a missing input, or a
        stream of the video that cannot be decoded, leaves its modality out (noted). A video
        none of whose streams can be read (not a video at all) is a MishonError. `sound` is
        the sound's title or id; `user_id` makes an "original sound" label the author's."""
        timings: dict[str, float] = {}
        notes: list[str] = []
        clock = time.perf_counter()
        decoded = decode_post(str(video) if video is not None else None, self.request)
        if video is not None and self.request.frames:
            timings["decode_s"] = time.perf_counter() - clock
        errors = [e for e in (decoded.frame_error, decoded.audio_error) if e]
        if video is not None and errors and decoded.frames is None and decoded.audio is None:
            raise MishonError(f"the video cannot be read: {errors[0]}")
        notes += errors
        text = None
        if caption and caption.strip():
            text, _ = extract_from_caption(caption)
            text = text.strip() or None
        identity = self.sound_identity(sound, user_id)
        units: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for modality, extractor in self.extractors.items():
            source = {
                "caption": text,
                "sound": identity,
                "video": decoded.frames if modality == "visual" else decoded.audio,
            }[self.fields[modality]]
            if source is None:
                notes.append(f"no {modality} input")
                continue
            clock = time.perf_counter()
            with self._locks[modality]:
                values, mask = extractor.encode([source])
            timings[f"{modality}_s"] = time.perf_counter() - clock
            if mask[0].any():
                # rounded as the feature stores keep units, so a new post is what a stored
                # post of the same content is
                stored = np.asarray(values[0]).astype(np.float16).astype(np.float32)
                units[modality] = (stored, mask[0])
        return units, timings, notes
