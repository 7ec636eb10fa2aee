"""Hashtag normalisation, parsing hashtag fields, and taking hashtags out of caption text.

Rules (documented in docs/design.md):
- normalised form: Unicode NFKC, lower-case, no leading '#', no whitespace or '#' inside;
- no control, format (zero-width, bidi), surrogate, private-use or unassigned character, except
  the zero-width joiner and non-joiner that emoji and some scripts (Persian, Indic) need; no
  '<' or '>' (markup): a hashtag recorded through the service is shown to other users;
- in a caption, a hashtag is '#' (or the full-width '＃') followed by letters, marks, digits or
  '_', with at least one letter; it must not follow a letter, digit, '&' or '/' (so `a#b`,
  `&#39;` and URL fragments are not hashtags), except directly after another hashtag, so that
  `#a#b` gives `a` and `b`;
- digit-only tags (`#1`) are not hashtags and stay in the text, as on the big platforms;
- an item of a hashtag list ends at its first whitespace (any Unicode space: the app ends a
  hashtag there, so `'PaTiChallenge\xa0on'` is `patichallenge`); a separated string is split at
  whitespace anyway.
"""

from __future__ import annotations

import ast
import json
import math
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import regex

from mishon.errors import FieldError

_WORD = r"[\p{L}\p{M}\p{N}_]"
# A chain of hashtags written without spaces (#a#b) is matched whole, then split.
_CAPTION_HASHTAGS = regex.compile(
    rf"(?<![\p{{L}}\p{{M}}\p{{N}}_&/])[#＃]({_WORD}+(?:[#＃]{_WORD}+)*)"
)
_CHAIN_SPLIT = regex.compile(r"[#＃]")
_HAS_LETTER = regex.compile(r"\p{L}")
_SPACES = regex.compile(r"\s+")
_SPACE_BEFORE_PUNCT = regex.compile(r"\s+([,.!?;:])")
DEFAULT_SEPARATORS = regex.compile(r"[,;|\s]+")
# Brackets and quotes in a separated string mean a malformed list literal, not hashtags.
_LIST_SYNTAX = regex.compile(r"[\[\]{}\"']")
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
_JOINERS = frozenset({"\u200c", "\u200d"})  # zero-width non-joiner, joiner


def normalize_hashtag(tag: str) -> str:
    """Return the normalised form of one hashtag, or raise ValueError if it is not one.

    An empty result (for example a lone '#') is returned as "" so that callers can skip it.
    """
    text = unicodedata.normalize("NFKC", tag).strip().lower().lstrip("#").strip()
    if _SPACES.search(text):
        raise ValueError(f"hashtag {tag!r} contains whitespace")
    for char in text:
        if unicodedata.category(char) in _INVISIBLE and char not in _JOINERS:
            raise ValueError(
                f"hashtag {tag!r} contains U+{ord(char):04X} "
                f"({unicodedata.name(char, 'unnamed')}): a control or invisible character"
            )
        if char in "<>":
            raise ValueError(f"hashtag {tag!r} contains {char!r} (markup)")
    if "#" in text:
        raise ValueError(f"hashtag {tag!r} contains '#' after its start")
    return text


def normalize_hashtags(tags: Iterable[str]) -> list[str]:
    """Normalise tags, drop empty ones, and remove repeats keeping the first occurrence."""
    seen: dict[str, None] = {}
    for tag in tags:
        norm = normalize_hashtag(tag)
        if norm:
            seen.setdefault(norm, None)
    return list(seen)


def is_normalized(tag: str) -> bool:
    """True if `tag` is already in normalised form (and not empty)."""
    try:
        return bool(tag) and normalize_hashtag(tag) == tag
    except ValueError:
        return False


def extract_from_caption(caption: str) -> tuple[str, list[str]]:
    """Split a caption into (text without hashtags, normalised hashtags in order of appearance).

    The text keeps everything that is not a hashtag, with runs of whitespace collapsed.
    """
    tags: list[str] = []

    def take(match: regex.Match[str]) -> str:
        parts = [p for p in _CHAIN_SPLIT.split(match.group(1)) if p]
        named = [p for p in parts if _HAS_LETTER.search(p)]
        if not named:
            return match.group(0)  # '#1', '#2024': not a hashtag
        tags.extend(named)
        return " "

    text = _CAPTION_HASHTAGS.sub(take, caption)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", _SPACES.sub(" ", text)).strip()
    return text, normalize_hashtags(tags)


@dataclass(frozen=True)
class ParsedHashtags:
    """A hashtag field read: the normalised tags, and how many list items ended at whitespace."""

    tags: list[str]
    cut: int = 0


def parse_hashtag_field(
    value: object, field: str = "hashtags", separator: str | None = None
) -> list[str]:
    """The normalised hashtags of a hashtag field (see parse_hashtag_list)."""
    return parse_hashtag_list(value, field, separator).tags


def parse_hashtag_list(
    value: object, field: str = "hashtags", separator: str | None = None
) -> ParsedHashtags:
    """Parse a hashtag field into a normalised list.

    Accepts a list/tuple/array of strings, a JSON list string ('["a", "b"]'), a Python-style
    list string ("['a', 'b']"), or a separated string ("a, b", "#a #b", "a|b"). Missing values
    (None, NaN, "") give an empty list. A list item ends at its first whitespace. Raises
    FieldError (reason "unparseable hashtags") when the value cannot be read as hashtags.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ParsedHashtags([])
    items: Sequence[object]
    listed = True
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return ParsedHashtags([])
        if text.startswith("["):
            items = _parse_list_literal(text, field)
        else:
            listed = False
            items = (
                text.split(separator) if separator is not None else DEFAULT_SEPARATORS.split(text)
            )
            if _LIST_SYNTAX.search(text):
                raise FieldError(
                    field, "unparseable hashtags", f"cannot parse hashtag list {text[:80]!r}"
                )
    elif isinstance(value, Sequence) or hasattr(value, "tolist"):
        sequence: Any = value.tolist() if hasattr(value, "tolist") else value
        items = list(sequence)
    else:
        raise FieldError(
            field, "unparseable hashtags", f"expected a list or string of hashtags, got {value!r}"
        )
    for item in items:
        if not isinstance(item, str):
            raise FieldError(
                field, "unparseable hashtags", f"hashtag list holds a non-string item {item!r}"
            )
    texts = [str(item) for item in items]  # every item is a str (checked above)
    cut = 0
    if listed:
        words = [_SPACES.split(text.strip(), maxsplit=1) for text in texts]
        cut = sum(len(w) > 1 for w in words)
        texts = [w[0] for w in words]
    try:
        return ParsedHashtags(normalize_hashtags(texts), cut)
    except ValueError as exc:
        raise FieldError(field, "unparseable hashtags", str(exc)) from None


def _parse_list_literal(text: str, field: str) -> list[object]:
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        try:
            parsed = ast.literal_eval(text)  # literals only: no code is run
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise FieldError(
                field, "unparseable hashtags", f"cannot parse hashtag list {text[:80]!r}"
            ) from None
    if not isinstance(parsed, list | tuple):
        raise FieldError(field, "unparseable hashtags", f"hashtag list {text[:80]!r} is not a list")
    return list(parsed)
