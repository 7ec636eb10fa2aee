"""Reading one field's value from a source record: counts, durations, times, text and ids.

Each parser returns None where the value is missing and raises FieldError (naming the field and
a reason) where it is present but cannot be read; a wrong value is never guessed.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any

import pandas as pd

from mishon.errors import FieldError

MAX_COUNT = 2**63 - 1  # the int64 column it is stored in
# How platforms and scrapers abbreviate counts: "12.7M", "274.2K", "1.1B".
COUNT_SUFFIXES = {"k": 10**3, "m": 10**6, "b": 10**9}
_COUNT_TEXT = re.compile(r"^(\d+(?:\.\d+)?)\s*([kKmMbB]?)$")
_GROUPED = re.compile(r"^\d{1,3}(,\d{3})+(\.0+)?$")  # 1,633 and 12,700,000


def parse_count(value: Any, name: str) -> int | None:
    """A whole number >= 0, or None where the value is missing.

    Text may group thousands with commas ("1,633") or abbreviate ("12.7M", "274.2K", "1B",
    case-insensitive); the result must be whole ("1.2345K" is refused, not rounded).
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise FieldError(name, "bad number", f"expected an integer >= 0, got {value!r}")
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if not value.is_integer():
            raise FieldError(name, "bad number", f"expected an integer >= 0, got {value!r}")
        number = int(value)
    elif isinstance(value, int):
        number = value
    else:
        number = _count_text(str(value).strip(), value, name)
    if number < 0:
        raise FieldError(name, "bad number", f"must be >= 0, got {number}")
    if number > MAX_COUNT:
        raise FieldError(name, "bad number", f"out of range: {number} is above {MAX_COUNT}")
    return number


def _count_text(text: str, value: Any, name: str) -> int:
    expected = f"expected an integer >= 0 (like 1633, 1,633 or 12.7M), got {value!r}"
    if _GROUPED.match(text):
        text = text.replace(",", "")
    if text.startswith("-") and _COUNT_TEXT.match(text[1:]):
        raise FieldError(name, "bad number", f"must be >= 0, got {text}")
    match = _COUNT_TEXT.match(text)
    if match is None:
        raise FieldError(name, "bad number", expected)
    try:
        number = Decimal(match.group(1)) * COUNT_SUFFIXES.get(match.group(2).lower(), 1)
    except InvalidOperation:
        raise FieldError(name, "bad number", expected) from None
    if number != number.to_integral_value():
        raise FieldError(name, "bad number", f"{value!r} is not a whole number")
    return int(number)


MAX_DURATION_S = 24 * 3600.0  # longer than any post: a misread column, not a clip
_CLOCK = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")  # [h:]mm:ss[.f]


def parse_duration(value: Any, name: str = "duration") -> float | None:
    """A clip's length in seconds from a number of seconds or "mm:ss" / "h:mm:ss"; None where
    missing. Negative, not finite or over a day is a FieldError."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise FieldError(name, "bad duration", f"expected seconds or mm:ss, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
        if math.isnan(seconds):
            return None
    else:
        text = str(value).strip()
        clock = _CLOCK.match(text)
        if clock is not None:
            hours, minutes, secs = clock.groups()
            if (hours is not None and int(minutes) >= 60) or float(secs) >= 60:
                raise FieldError(name, "bad duration", f"{value!r} is not a valid clock time")
            seconds = int(hours or 0) * 3600 + int(minutes) * 60 + float(secs)
        else:
            try:
                seconds = float(text.removesuffix("s").strip())
            except ValueError:
                raise FieldError(
                    name, "bad duration", f"expected seconds or mm:ss, got {value!r}"
                ) from None
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_DURATION_S:
        raise FieldError(
            name, "bad duration", f"{value!r} is not a clip length (0 to {MAX_DURATION_S:g} s)"
        )
    return seconds


_NUMERIC = re.compile(r"^[+-]?\d+(\.\d+)?$")


EARLIEST = pd.Timestamp("1990-01-01", tz="UTC")  # older than any platform's posts
RELATIVE_TIMES = frozenset({"now", "today", "yesterday", "tomorrow"})


def parse_timestamp(value: Any, name: str = "created_at") -> pd.Timestamp | None:
    """A UTC timestamp from ISO 8601 text or Unix seconds; None where missing.

    Text without a time zone is taken as UTC. Numbers are Unix seconds (milliseconds when
    larger than 10^11, as some exports write them). Strict: a relative word (`now`, `today`)
    or a time before 1990 or more than a day ahead of now (`2024` read as seconds is 1970,
    `9999-12-31`) is a FieldError, never a silently wrong time.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str) and value.strip().lower() in RELATIVE_TIMES:
        raise FieldError(
            name, "bad timestamp", f"{value!r} is relative: give an ISO 8601 time or Unix seconds"
        )
    stamp = _read_timestamp(value, name)
    if stamp is None:
        return None
    latest = pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=1)
    if not EARLIEST <= stamp <= latest:
        raise FieldError(
            name,
            "bad timestamp",
            f"implausible time {stamp.isoformat()} read from {value!r}: expected between "
            f"{EARLIEST.date()} and now (ISO 8601 like 2024-01-05T12:00:00Z, or Unix seconds "
            "like 1704456000)",
        )
    return stamp


def _read_timestamp(value: Any, name: str) -> pd.Timestamp | None:
    if isinstance(value, float) and math.isnan(value):
        return None
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str) and _NUMERIC.match(value.strip()):
            number = float(value.strip())
        else:
            number = None
        if number is not None:
            unit = "ms" if abs(number) > 1e11 else "s"
            return pd.Timestamp(number, unit=unit, tz="UTC")
        stamp = pd.Timestamp(str(value).strip())
    except (ValueError, OverflowError, TypeError) as exc:
        raise FieldError(name, "bad timestamp", f"cannot read timestamp {value!r}: {exc}") from None
    if pd.isna(stamp):
        raise FieldError(name, "bad timestamp", f"cannot read timestamp {value!r}")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def text_value(value: Any, name: str) -> str | None:
    """A text field's value: text, or a number written as text (ids often are); an object, a
    list or a true/false (JSON lines) is a FieldError, never its Python spelling."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        kind = {dict: "an object", list: "a list", bool: "true/false"}.get(type(value), "not text")
        raise FieldError(name, "bad value", f"expected text, got {kind}: {value!r}"[:200])
    return str(value)


def required_id(value: Any, name: str) -> str:
    text = (text_value(value, name) or "").strip()
    if not text:
        raise FieldError(name, "missing value", "is empty")
    return text
