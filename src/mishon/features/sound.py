"""Acoustic extractor `sound`: the identity of the post's sound, for posts known by the sound
they use rather than by an audio track (a platform's export names the sound; DESIGN: "the sound
in the model" in docs/design.md).

Each sound identity (data.sounds) is hashed into a fixed pseudo-random unit vector of `dim`
values: posts with the same sound get the same vector (cosine 1), different sounds nearly
orthogonal ones (cosine about N(0, 1/dim)), so the acoustic kNN links posts that share a sound and
the network learns an embedding of the sound through its first layer. No weights, no download.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np

from mishon.features.base import Modality, empty_batch

SOUND_DIM = 256  # cosine of two different sounds: sd 1/16, so a 0.2 edge threshold is 3.2 sd


@lru_cache(maxsize=65536)
def sound_vector(sound: str, dim: int = SOUND_DIM) -> np.ndarray:
    """The unit vector of one sound identity (deterministic across machines and runs)."""
    seed = int.from_bytes(hashlib.blake2b(sound.encode("utf-8"), digest_size=8).digest(), "big")
    vector = np.random.default_rng(seed).standard_normal(dim)
    vector /= np.linalg.norm(vector)
    out = vector.astype(np.float32)
    out.flags.writeable = False
    return out


class SoundIdentityExtractor:
    """One unit per post: the hashed vector of its sound identity (None: no sound, masked)."""

    name = "sound"
    modality = Modality.ACOUSTIC
    units = 1

    def __init__(self, dim: int = SOUND_DIM) -> None:
        self.dim = dim
        self.model_id = f"blake2b-gaussian-{dim}"

    def encode(self, inputs: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
        values, mask = empty_batch(len(inputs), 1, self.dim)
        for row, sound in enumerate(inputs):
            if sound:
                values[row, 0] = sound_vector(sound, self.dim)
                mask[row, 0] = True
        return values, mask
