"""Textual extractor `charngram`: hashed character n-grams of each word, for any language and
without weights (nothing to download; a caption in Vietnamese, Russian or Thai carries signal).

The caption is normalised (NFKC, case folded) and cut into words (runs of letters, marks, digits
and '_', so scripts written without spaces give longer words); one unit per word, up to L.
A word `w` is read as `<w>` and its character n-grams (n = 2..4) plus the whole word are
hashed (CRC-32, stable across runs and machines) with a sign into `dim` buckets (signed feature
hashing, Weinberger et al. 2009); the unit is that vector scaled to length one. Words that
share spelling share n-grams, so "dance", "dancing" and "dancer" point close together.
"""

from __future__ import annotations

import unicodedata
import zlib
from functools import lru_cache

import numpy as np
import regex

from mishon.features.base import Modality, empty_batch

CHARNGRAM_DIM = 384
NGRAMS = (2, 3, 4)
_WORDS = regex.compile(r"[\p{L}\p{M}\p{N}_]+")


@lru_cache(maxsize=200_000)
def word_vector(word: str, dim: int = CHARNGRAM_DIM) -> np.ndarray:
    """The unit hashed n-gram vector of one (normalised) word."""
    marked = f"<{word}>"
    grams = [marked] + [marked[i : i + n] for n in NGRAMS for i in range(len(marked) - n + 1)]
    vector = np.zeros(dim, dtype=np.float32)
    for gram in grams:
        code = zlib.crc32(gram.encode("utf-8"))
        vector[code % dim] += 1.0 if (code >> 31) & 1 else -1.0
    norm = float(np.linalg.norm(vector))
    if norm > 0:
        vector /= norm
    vector.flags.writeable = False
    return vector


def caption_words(text: str) -> list[str]:
    """The words of a caption, normalised, in order."""
    return _WORDS.findall(unicodedata.normalize("NFKC", text).casefold())


class CharNgramExtractor:
    """One unit per word of the caption (up to `units`): hashed character n-grams."""

    name = "charngram"
    modality = Modality.TEXTUAL

    def __init__(self, units: int = 32, dim: int = CHARNGRAM_DIM) -> None:
        self.units = units
        self.dim = dim
        self.model_id = f"crc32-char{NGRAMS[0]}-{NGRAMS[-1]}grams-{dim}"

    def encode(self, inputs: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
        values, mask = empty_batch(len(inputs), self.units, self.dim)
        for row, text in enumerate(inputs):
            if not text:
                continue
            for unit, word in enumerate(caption_words(text)[: self.units]):
                vector = word_vector(word, self.dim)
                if vector.any():
                    values[row, unit] = vector
                    mask[row, unit] = True
        return values, mask
