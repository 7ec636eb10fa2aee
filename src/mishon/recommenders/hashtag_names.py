"""Hashtag names as text: segmented into words, embedded by the dataset's textual extractor.

`#sunsetvibes` is written without spaces; a subword tokenizer would cut it into pieces that
mean little ("sunset", "##vi", "##bes"). `segment_hashtag` splits it into the likeliest words
of a word list by dynamic programming: each known word costs a constant plus the log of its
rank (frequent words are cheap), a run of digits a little more, any other letter a lot, so the
split with the fewest, most common words wins ("sunset vibe s", "the walking dead").
`HashtagNames` embeds the segmented names as the posts' captions were (the textual extractor
the feature store records, units pooled by their mean, centred with the posts' centre, unit
length), so a name vector is comparable with a post's pooled text vector.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mishon.data.split_data import SplitData
from mishon.errors import MishonError
from mishon.features.base import Extractor
from mishon.features.registry import extractor_of_store
from mishon.features.store import FeatureStore, modality_dir, read_store_manifest
from mishon.graph.pooled import pool_units, pooled_vectors_and_centre

WORD_COST = 5.0  # per word, beyond log(rank): fewer words win ties of frequency
DIGITS_COST = 3.0  # a run of digits
LETTER_COST = 10.0  # per letter outside any word
LONGEST_WORD = 24
BATCH = 256  # names per extractor call


def segment_hashtag(tag: str, ranks: Mapping[str, int]) -> str:
    """`tag` split into words of `ranks` (word -> frequency rank, 1 = most frequent), joined
    by spaces; letters outside every word are kept as they are."""
    size = len(tag)
    best = [0.0] + [math.inf] * size
    start = [0] * (size + 1)
    for end in range(1, size + 1):
        for begin in range(max(0, end - LONGEST_WORD), end):
            piece = tag[begin:end]
            if piece in ranks:
                cost = WORD_COST + math.log(ranks[piece])
            elif piece.isdigit():
                cost = DIGITS_COST
            else:
                cost = LETTER_COST * len(piece)
            if best[begin] + cost < best[end]:
                best[end], start[end] = best[begin] + cost, begin
    words, end = [], size
    while end > 0:
        words.append(tag[start[end] : end])
        end = start[end]
    return " ".join(reversed(words))


def tokenizer_words(tokenizer: object) -> dict[str, int]:
    """Whole words of a WordPiece vocabulary (no '##' pieces, one-letter words 'a' and 'i'
    only) ranked by id: BERT-style vocabularies list words by frequency after the specials."""
    vocabulary: dict[str, int] = tokenizer.get_vocab()  # type: ignore[attr-defined]
    words = [
        (index, word)
        for word, index in vocabulary.items()
        if word.isascii() and word.isalpha() and (len(word) > 1 or word in "ai")
    ]
    return {word: rank for rank, (_, word) in enumerate(sorted(words), start=1)}


class HashtagNames:
    """Name vectors of hashtags: `names(tags)` -> float32 [len(tags), D], unit rows (zero for
    a name the extractor gives nothing for)."""

    def __init__(self, extractor: Extractor, centre: np.ndarray) -> None:
        self.extractor = extractor
        self.centre = np.asarray(centre, dtype=np.float32)
        tokenizer = getattr(extractor, "tokenizer", None)
        self.ranks = tokenizer_words(tokenizer) if tokenizer is not None else {}

    @classmethod
    def for_dataset(cls, dataset: Path, centre: np.ndarray, device: str = "cpu") -> HashtagNames:
        """With the textual extractor that made `dataset`'s textual features."""
        return cls(extractor_of_store(dataset, "textual", device), centre)

    @classmethod
    def for_split(cls, data: SplitData, device: str = "cpu") -> HashtagNames:
        """For a split's posts: their textual extractor, centred as their pooled vectors."""
        store = modality_dir(data.dataset, "textual")
        if read_store_manifest(store) is None:
            raise MishonError(
                f"hashtag names need textual features: run `mishon extract {data.dataset}`"
            )
        _, _, centre = pooled_vectors_and_centre(FeatureStore.open(store), data.rows)
        return cls.for_dataset(data.dataset, centre, device)

    def segment(self, tag: str) -> str:
        return segment_hashtag(tag, self.ranks) if self.ranks else tag

    def __call__(self, tags: list[str]) -> np.ndarray:
        vectors = np.zeros((len(tags), len(self.centre)), dtype=np.float32)
        for start in range(0, len(tags), BATCH):
            texts = [self.segment(t) for t in tags[start : start + BATCH]]
            units, mask = self.extractor.encode(texts)
            for offset in range(len(texts)):
                vector = pool_units(units[offset], mask[offset], self.centre)
                if vector is not None:
                    vectors[start + offset] = vector
        return vectors
