"""What an extraction engine computes, shared by the local engine (`extract.py`) and the Ray
engine (`ray_engine.py`): which streams to decode from each video (`DecodeRequest`), one
post's decoded streams (`DecodedPost`, `decode_post`), the batches still to compute (`Jobs`)
and one modality of one batch through its extractor (`encode_batch`).

Both engines import this module and neither imports the other's internals, so the package has
no import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mishon.features.base import Extractor, Modality
from mishon.features.registry import input_field
from mishon.media.decode import MediaError, read_audio, sample_frames


@dataclass(frozen=True)
class DecodeRequest:
    """What to take out of each video: frames (count 0 = none) and sound (rate None = none)."""

    frames: int
    frame_size: int
    sample_rate: int | None
    max_audio_s: float

    @classmethod
    def for_extractors(
        cls, visual: Extractor | None, acoustic: Extractor | None, max_audio_s: float
    ) -> DecodeRequest:
        """What the given visual and acoustic extractors need (None: that modality is off, or
        reads a field other than the video)."""
        if acoustic is not None and input_field(acoustic, Modality.ACOUSTIC) != "video":
            acoustic = None
        return cls(
            frames=visual.units if visual else 0,
            frame_size=getattr(visual, "frame_size", 0) if visual else 0,
            sample_rate=getattr(acoustic, "sample_rate", 16000) if acoustic else None,
            max_audio_s=max_audio_s,
        )


@dataclass
class DecodedPost:
    frames: np.ndarray | None = None
    audio: np.ndarray | None = None
    frame_error: str | None = None
    audio_error: str | None = None


def decode_post(path: str | None, request: DecodeRequest) -> DecodedPost:
    """Decode one post's video; errors become messages, never exceptions (runs in a worker)."""
    result = DecodedPost()
    if path is None:
        return result
    file = Path(path)
    if request.frames:
        try:
            result.frames = sample_frames(file, request.frames, request.frame_size)
        except MediaError as exc:
            result.frame_error = str(exc)
    if request.sample_rate is not None:
        try:
            result.audio = read_audio(file, request.sample_rate, request.max_audio_s)
        except MediaError as exc:
            result.audio_error = str(exc)
    return result


Encoded = tuple[np.ndarray, np.ndarray, dict[int, str]]  # values, mask, failures by offset


@dataclass
class Jobs:
    """What an engine needs: the batches to compute and the posts' inputs."""

    work: list[tuple[range, list[Modality]]]
    extractors: dict[Modality, Extractor]
    paths: list[str | None]
    texts: dict[str, list[str | None]]
    unsafe: dict[int, str]
    request: DecodeRequest

    def reads_video(self, todo: list[Modality]) -> bool:
        """Whether any of these modalities' extractors reads the video."""
        return any(input_field(self.extractors[m], m) == "video" for m in todo)

    @property
    def needs_media(self) -> bool:
        return any(self.reads_video(todo) for _, todo in self.work)


def encode_batch(
    extractor: Extractor,
    modality: Modality,
    rows: range,
    decoded: list[DecodedPost] | None,
    texts: dict[str, list[str | None]],
    unsafe: dict[int, str],
) -> Encoded:
    """One modality of one batch through its extractor; failed posts are masked out."""
    inputs, failed = _modality_inputs(extractor, modality, rows, decoded, texts, unsafe)
    values, mask = extractor.encode(inputs)
    for offset in failed:
        mask[offset] = False
    return values, mask, failed


def _modality_inputs(
    extractor: Extractor,
    modality: Modality,
    rows: range,
    decoded: list[DecodedPost] | None,
    texts: dict[str, list[str | None]],
    unsafe: dict[int, str],
) -> tuple[list[object], dict[int, str]]:
    """The extractor inputs of a batch and the failures (row offset -> message)."""
    failed: dict[int, str] = {}
    field = input_field(extractor, modality)
    if field != "video":
        return [texts[field][r] for r in rows], failed
    assert decoded is not None
    inputs: list[object] = []
    for offset, (row, post) in enumerate(zip(rows, decoded, strict=True)):
        error = unsafe.get(row) or (
            post.frame_error if modality == Modality.VISUAL else post.audio_error
        )
        if error:
            failed[offset] = error
        inputs.append(post.frames if modality == Modality.VISUAL else post.audio)
    return inputs, failed
