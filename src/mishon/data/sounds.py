"""The sound a post uses, as one identity per distinct sound.

A platform's export names the sound ("music") of a post by its title. Titles are compared after
Unicode NFKC, case folding, removing invisible format characters and collapsing whitespace, so
"Original Sound" and "original  sound" are one title. A post made with its author's own audio
carries a generic title in the app's language ("original sound", "sonido original",
"оригинальный звук", ...): the same title is a different sound for each author, so such a title
becomes one sound per author, `original sound@USER_ID`. Titles that name their creator
("original sound - maria") are one sound shared by whoever reuses it, as on the platform.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

import regex

ORIGINAL_SUFFIX = "@"
# The app's "original sound" label in the languages seen on TikTok (matched after normalising).
ORIGINAL_SOUND_TITLES: frozenset[str] = frozenset(
    {
        "original sound",  # English
        "sonido original",  # Spanish
        "som original",  # Portuguese
        "son original",  # French
        "originalton",  # German
        "suono originale",  # Italian
        "origineel geluid",  # Dutch
        "originalljud",  # Swedish
        "original lyd",  # Danish, Norwegian
        "alkuperäinen ääni",  # Finnish
        "dźwięk oryginalny",  # Polish
        "oryginalny dźwięk",  # Polish (older app)
        "originální zvuk",  # Czech
        "pôvodný zvuk",  # Slovak
        "eredeti hang",  # Hungarian
        "sunet original",  # Romanian
        "orijinal ses",  # Turkish
        "оригинальный звук",  # Russian
        "оригінальний звук",  # Ukrainian
        "πρωτότυπος ήχος",  # Greek
        "الصوت الأصلي",  # Arabic
        "صدای اصلی",  # Persian
        "צליל מקורי",  # Hebrew
        "ओरिजिनल साउंड",  # Hindi
        "suara asli",  # Indonesian
        "bunyi asal",  # Malay
        "âm thanh gốc",  # Vietnamese
        "เสียงต้นฉบับ",  # Thai
        "orihinal na tunog",  # Filipino
        "原聲",  # Chinese (traditional)
        "原声",  # Chinese (simplified)
        "オリジナル楽曲",  # Japanese
        "오리지널 사운드",  # Korean
    }
)
_SPACES = regex.compile(r"\s+")


def normalize_title(title: str) -> str:
    """A sound title in the form titles are compared in ("" when nothing is left)."""
    text = unicodedata.normalize("NFKC", title).casefold()
    text = "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Cf"))
    return _SPACES.sub(" ", text).strip()


class SoundNamer:
    """Sound titles -> sound identities, with the per-author rule for "original sound" titles.

    `extra_original_titles` adds labels (any spelling; they are normalised) to the built-in ones.
    """

    def __init__(self, extra_original_titles: Iterable[str] = ()) -> None:
        extra = {normalize_title(t) for t in extra_original_titles}
        self.original_titles = ORIGINAL_SOUND_TITLES | (extra - {""})

    def identity(self, title: str | None, user_id: str) -> str | None:
        """The sound's identity: the normalised title, or `TITLE@USER_ID` for the author's own
        audio; None where no title is given."""
        if title is None:
            return None
        key = normalize_title(title)
        if not key:
            return None
        if key in self.original_titles:
            return f"{key}{ORIGINAL_SUFFIX}{user_id}"
        return key
