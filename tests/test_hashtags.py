from __future__ import annotations

import re

import pytest

from mishon.data.hashtags import (
    extract_from_caption,
    is_normalized,
    normalize_hashtag,
    parse_hashtag_field,
)
from mishon.errors import FieldError


@pytest.mark.parametrize(
    ("caption", "text", "tags"),
    [
        ("I love #café!", "I love!", ["café"]),
        ("#日本 trip", "trip", ["日本"]),
        ("#a#b end", "end", ["a", "b"]),
        ("fun #Summer, #SUMMER.", "fun,.", ["summer"]),
        ("great day #fun!!! really", "great day!!! really", ["fun"]),
        ("deal #1 today", "deal #1 today", []),
        ("it&#39;s here", "it&#39;s here", []),
        ("see http://x.com/#frag", "see http://x.com/#frag", []),
        ("mid#word stays", "mid#word stays", []),
        ("#हिन्दी गाना", "गाना", ["हिन्दी"]),
        ("＃Ｔｏｋｙｏ night", "night", ["tokyo"]),
        ("#snake_case #2024goals", "", ["snake_case", "2024goals"]),
        ("no tags at all", "no tags at all", []),
    ],
)
def test_extract_from_caption(caption: str, text: str, tags: list[str]) -> None:
    assert extract_from_caption(caption) == (text, tags)


def test_normalize_hashtag_nfkc_lower_no_hash() -> None:
    assert normalize_hashtag("#Café") == "café"
    assert normalize_hashtag("Cafe\u0301") == "café"  # combining accent composed by NFKC
    assert normalize_hashtag("ＡＢＣ") == "abc"
    assert normalize_hashtag("##Double") == "double"
    assert normalize_hashtag("#") == ""
    with pytest.raises(ValueError, match="whitespace"):
        normalize_hashtag("new york")
    with pytest.raises(ValueError, match="'#' after its start"):
        normalize_hashtag("a#b")


def test_is_normalized() -> None:
    assert is_normalized("café")
    assert not is_normalized("Café")
    assert not is_normalized("#cafe")
    assert not is_normalized("")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["#A", "b", "a"], ["a", "b"]),
        ('["x", "#Y"]', ["x", "y"]),
        ("['x', 'y']", ["x", "y"]),
        ("#a #b,c|d;e", ["a", "b", "c", "d", "e"]),
        ("", []),
        (None, []),
        (float("nan"), []),
        ("solo", ["solo"]),
        (("t1", "t2"), ["t1", "t2"]),
    ],
)
def test_parse_hashtag_field(value: object, expected: list[str]) -> None:
    assert parse_hashtag_field(value) == expected


def test_parse_hashtag_field_custom_separator_keeps_spaces_out() -> None:
    assert parse_hashtag_field("a/b/c", separator="/") == ["a", "b", "c"]
    with pytest.raises(FieldError, match="whitespace"):
        parse_hashtag_field("new york/paris", separator="/")


@pytest.mark.parametrize("value", ["[a, b", "['a', 3]", "{'a': 1}", "[[1]]", 42])
def test_parse_hashtag_field_errors(value: object) -> None:
    with pytest.raises(FieldError) as info:
        parse_hashtag_field(value, field="tags")
    assert info.value.field == "tags"
    assert info.value.reason == "unparseable hashtags"


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        ("a\x00b", "U+0000"),
        ("sun\u200bset", "U+200B (ZERO WIDTH SPACE)"),
        ("evil\u202etag", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
        ("soft\u00adhyphen", "U+00AD (SOFT HYPHEN)"),
        ("<script>", "'<' (markup)"),
    ],
)
def test_control_invisible_and_markup_characters_are_not_hashtags(tag: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        normalize_hashtag(tag)


def test_joiners_inside_emoji_and_scripts_stay() -> None:
    assert normalize_hashtag("👨\u200d🎓") == "👨\u200d🎓"
    assert normalize_hashtag("می\u200cخواهم") == "می\u200cخواهم"
    assert normalize_hashtag("i'mblessed") == "i'mblessed"
