"""The extractor contract: a post's modality input -> a sequence of L unit vectors plus a mask.

An extractor encodes a batch of inputs of its modality (frames, a sound track, or a caption;
None where the post has none) into float32 [B, L, D] and a bool mask [B, L] (True = a real
unit). A post with no input gets a fully masked row of zeros, never an error.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

import numpy as np


class Modality(StrEnum):
    """The three content modalities of a micro-video."""

    VISUAL = "visual"
    ACOUSTIC = "acoustic"
    TEXTUAL = "textual"


@runtime_checkable
class Extractor(Protocol):
    """What the extraction pipeline needs from an extractor."""

    name: str
    modality: Modality
    units: int  # L: frames, audio windows or tokens per post
    dim: int  # D
    model_id: str  # weights it runs, for the manifest

    def encode(self, inputs: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        """Encode a batch: float32 [B, L, D] and bool mask [B, L]."""
        ...


def empty_batch(size: int, units: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Zeros and an all-False mask for `size` posts."""
    return np.zeros((size, units, dim), dtype=np.float32), np.zeros((size, units), dtype=bool)


def encode_frames(
    inputs: list[np.ndarray | None],
    units: int,
    dim: int,
    chunk: int,
    encode_chunk: Callable[[np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Run a per-frame encoder over the first `units` frames of every clip, `chunk` frames at a
    time; `encode_chunk` maps uint8 [n, H, W, 3] to float [n, dim]."""
    values, mask = empty_batch(len(inputs), units, dim)
    owners = [
        (row, unit)
        for row, clip in enumerate(inputs)
        if clip is not None
        for unit in range(min(len(clip), units))
    ]
    for start in range(0, len(owners), chunk):
        part = owners[start : start + chunk]
        frames = np.stack([inputs[row][unit] for row, unit in part])  # type: ignore[index]
        for (row, unit), vector in zip(part, encode_chunk(frames), strict=True):
            values[row, unit] = vector
            mask[row, unit] = True
    return values, mask


class ExtractorUnavailable(Exception):
    """The extractor's weights or packages are not here; the message says how to provide them."""
