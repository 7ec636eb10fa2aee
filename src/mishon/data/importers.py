"""Importers: CSV / TSV / JSON lines with a column mapping, and the #HowYouTagTweets folder.

Every source is read into raw records (file, row, fields), each record is converted field by
field into a post, and bad records are either reported all together (the default, nothing is
written) or skipped and listed in `import_report.json` (`skip_bad`). Hashtags written in a
caption are taken out of it, so the labels never leak into the text a model reads.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import math
import os
import re
import shutil
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from mishon import __version__
from mishon.config import MAPPABLE_FIELDS, ImportSettings
from mishon.data.hashtags import extract_from_caption, parse_hashtag_list
from mishon.data.schema import ENGAGEMENT_FIELDS, MEDIA_DIR, USER_COUNTER_FIELDS, VIDEO_EXTENSIONS
from mishon.data.sounds import SoundNamer
from mishon.data.store import building_dir, write_dataset, write_json
from mishon.data.values import (
    parse_count,
    parse_duration,
    parse_timestamp,
    required_id,
    text_value,
)
from mishon.errors import FieldError, InputError, MishonError, Problem

SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "valid": "valid",
    "val": "valid",
    "validation": "valid",
    "dev": "valid",
    "test": "test",
}
HOWYOUTAGTWEETS_FILES = (("train", "train.tsv"), ("valid", "valid.tsv"), ("test", "test.tsv"))


@dataclass
class RawRecord:
    """One source record: where it came from and its values under dataset field names."""

    file: str
    row: int
    values: dict[str, Any]
    row_label: str = "line"
    error: str | None = None  # why the record could not be read into values
    error_field: str | None = None


@dataclass
class ImportResult:
    """What an import produced: the tables, the skipped records and where media came from."""

    posts: pd.DataFrame
    users: pd.DataFrame | None
    problems: list[Problem] = field(default_factory=list)
    records_read: int = 0
    merged: int = 0  # repeated records of one post (same identity), kept once
    hashtags_cut: int = 0  # hashtags that ended at whitespace inside a list item
    implied: list[str] = field(default_factory=list)  # fields read from columns of their name

    def skipped_by_reason(self) -> dict[str, int]:
        return dict(Counter(p.reason for p in self.problems).most_common())


def parse_mapping(text: str) -> dict[str, str]:
    """Parse 'post_id=id,user_id=author' into a dict; raise MishonError on a malformed pair."""
    mapping: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, sep, column = pair.partition("=")
        if not sep or not key.strip() or not column.strip():
            raise MishonError(f"bad --map entry {pair!r}: expected FIELD=COLUMN")
        key = key.strip()
        if key not in MAPPABLE_FIELDS:
            raise MishonError(
                f"bad --map entry {pair!r}: unknown field {key!r}; "
                f"mappable fields: {', '.join(MAPPABLE_FIELDS)}"
            )
        if key in mapping:
            raise MishonError(f"bad --map: field {key!r} mapped twice")
        mapping[key] = column.strip()
    return mapping


def _split_label(value: Any) -> str | None:
    text = (text_value(value, "split") or "").strip().lower()
    if not text:
        return None
    if text not in SPLIT_ALIASES:
        raise FieldError("split", "bad split", f"unknown split {value!r}; use train, valid or test")
    return SPLIT_ALIASES[text]


def _video_source(value: Any, base: Path, outside: bool = False) -> Path | None:
    """The video file a record names, resolved (symlinks followed); it must lie inside `base`
    (the source's folder) unless `outside`."""
    text = (text_value(value, "video") or "").strip()
    if not text:
        return None
    if "://" in text:
        raise FieldError("video", "unreadable media", f"{text!r} is not a local file")
    path = Path(text) if Path(text).is_absolute() else base / text
    if path.suffix.lower() not in VIDEO_EXTENSIONS:
        raise FieldError(
            "video",
            "bad media type",
            f"{text!r} has extension {path.suffix or '(none)'!r}; "
            f"accepted: {', '.join(sorted(VIDEO_EXTENSIONS))}",
        )
    try:
        resolved = path.resolve()
    except (RuntimeError, OSError) as exc:  # a symlink loop, a path too long
        raise FieldError(
            "video", "unreadable media", f"{text!r} cannot be resolved: {exc}"
        ) from None
    if not outside and not resolved.is_relative_to(base.resolve()):
        raise FieldError(
            "video",
            "media outside the source",
            f"{text!r} resolves to {resolved}, outside {base.resolve()} "
            "(pass --allow-outside-media to accept it)",
        )
    if not resolved.is_file() or not os.access(resolved, os.R_OK):
        raise FieldError("video", "unreadable media", f"{text!r} is not a readable file")
    return resolved


# --------------------------------------------------------------------------- readers


def _open_text(path: Path, encoding: str, newline: str = "") -> Any:
    """Open a text source after checking that every line decodes (errors name the line)."""
    if not path.exists():
        raise InputError.single(path, "file not found", reason="unreadable file")
    if not path.is_file():
        raise InputError.single(path, "not a regular file", reason="unreadable file")
    try:
        decoder = codecs.getincrementaldecoder(encoding)()
    except LookupError:
        raise MishonError(f"unknown text encoding {encoding!r}") from None
    try:
        with path.open("rb") as raw:
            for number, line in enumerate(raw, start=1):
                try:
                    decoder.decode(line)
                except UnicodeDecodeError:
                    raise _decode_guard(path, number) from None
        return path.open(encoding=encoding, newline=newline)
    except OSError as exc:
        raise InputError.single(
            path, f"cannot open: {exc.strerror}", reason="unreadable file"
        ) from None


def _decode_guard(path: Path, line: int) -> InputError:
    return InputError.single(
        path,
        "not valid text in the given encoding (try --encoding)",
        row=line,
        reason="unreadable file",
        row_label="line",
    )


# A record may span lines only inside a quoted cell; one longer than this is refused (and,
# with --skip-bad, listed) rather than read into memory: an unclosed quote would otherwise
# swallow the rest of the file into one cell.
MAX_RECORD_CHARS = 1 << 20


def _open_quote_field(line: str, delimiter: str, inside: bool, field: int) -> tuple[bool, int]:
    """Scan one physical line of CSV; whether a quoted cell is still open at its end, and the
    index of the cell the scan ended in. A quote opens a quoted cell only at a cell's start."""
    start = not inside
    i = 0
    while i < len(line):
        char = line[i]
        if inside:
            if char == '"':
                if i + 1 < len(line) and line[i + 1] == '"':
                    i += 1  # an escaped quote
                else:
                    inside = False
        elif char == delimiter:
            field += 1
            start = True
            i += 1
            continue
        elif char == '"' and start:
            inside = True
        start = False
        i += 1
    return inside, field


def _parse_record(text: str, delimiter: str) -> list[str]:
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter, strict=True))
    if len(rows) > 1:
        raise csv.Error("a line break outside quotes")
    return rows[0] if rows else []


def _delimited_records(
    lines: Iterable[str], delimiter: str
) -> Iterator[tuple[int, list[str] | None, str | None, int | None]]:
    """(first line number, cells, error, cell index of the error) for each record.

    A record spans lines only while a quoted cell is open. Where it cannot be read (a quote
    that never closes within MAX_RECORD_CHARS, text after a closing quote), it is reported on
    its first line and reading resumes at the next line, so a stray quote costs one record.
    Lines are read as they come: at most one record's lines are held.
    """
    source = enumerate(lines, start=1)
    again: deque[tuple[int, str]] = deque()  # lines read ahead that a failed record gives back

    def next_line() -> tuple[int, str] | None:
        return again.popleft() if again else next(source, None)

    while (line := next_line()) is not None:
        record = [line]
        inside, cell = _open_quote_field(line[1], delimiter, False, 0)
        size = len(line[1])
        while inside and size <= MAX_RECORD_CHARS and (more := next_line()) is not None:
            record.append(more)
            size += len(more[1])
            inside, cell = _open_quote_field(more[1], delimiter, inside, cell)
        first = line[0]
        if inside:
            reason = "is longer than 1 MiB" if size > MAX_RECORD_CHARS else "never closes"
            yield first, None, f"a quoted cell opened on this line {reason}", cell
            again.extendleft(reversed(record[1:]))
            continue
        try:
            cells = _parse_record("".join(text for _, text in record), delimiter)
        except csv.Error as exc:
            opened, cell = _open_quote_field(line[1], delimiter, False, 0)
            hint = " (an unbalanced quote?)" if len(record) > 1 else ""
            yield first, None, f"malformed CSV: {exc}{hint}", cell if opened else None
            again.extendleft(reversed(record[1:]))
            continue
        yield first, cells, None, None


def read_delimited(
    path: Path, delimiter: str, columns: list[str], encoding: str
) -> Iterator[RawRecord]:
    """Records of a CSV/TSV file with a header row; each record names its first line.

    Parsing is strict: an unclosed quote, text after a closing quote or a wrong number of
    cells makes that record bad (naming its line and, where known, its cell), not the file.
    """
    with _open_text(path, encoding) as handle:
        yield from _records_of(path, handle, delimiter, columns)


def _records_of(
    path: Path, lines: Iterable[str], delimiter: str, columns: list[str]
) -> Iterator[RawRecord]:
    header: list[str] | None = None
    index: dict[str, int] = {}
    for number, cells, error, bad_cell in _delimited_records(lines, delimiter):
        if header is None:
            if cells is None:
                raise InputError.single(
                    path,
                    f"malformed header: {error}",
                    reason="unreadable file",
                    row=number,
                    row_label="line",
                )
            header = _header(path, cells, columns)
            index = {name: header.index(name) for name in columns}
            continue
        if cells is None:
            where = header[bad_cell] if bad_cell is not None and bad_cell < len(header) else None
            yield RawRecord(str(path), number, {}, error=error, error_field=where)
            continue
        if all(not c.strip() for c in cells):
            continue  # blank line, not a record
        if len(cells) != len(header):
            error = f"has {len(cells)} cells, the header {len(header)}"
            yield RawRecord(str(path), number, {}, error=error)
            continue
        yield RawRecord(str(path), number, {col: cells[i] for col, i in index.items()})
    if header is None:
        raise InputError.single(path, "file is empty (no header row)", reason="unreadable file")


def _header(path: Path, cells: list[str], columns: list[str]) -> list[str]:
    header = [h.strip() for h in cells]
    missing = [c for c in columns if c not in header]
    if missing:
        raise InputError.single(
            path,
            f"missing column(s) {missing}; the header has: {header}",
            field=missing[0],
            reason="missing column",
        )
    return header


def _numbered_lines(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    """Non-blank lines of a text file with their 1-based numbers, line ends removed."""
    # Lines end at '\n' only, as in the encoding check, so line numbers agree with it.
    with _open_text(path, encoding, newline="\n") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, line.rstrip("\r\n")


def read_jsonl(path: Path, encoding: str) -> Iterator[RawRecord]:
    """Records of a JSON-lines file, one object per non-blank line."""
    for number, text in _numbered_lines(path, encoding):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            yield RawRecord(str(path), number, {}, error=f"not valid JSON: {exc.msg}")
            continue
        if not isinstance(obj, dict):
            yield RawRecord(str(path), number, {}, error="not a JSON object")
            continue
        yield RawRecord(str(path), number, obj)


# --------------------------------------------------------------------------- conversion


# What tells two records of one post_id apart as different posts (SOURCE: the video file they
# name); the rest (engagement, the author's counters) changes between collections and is taken
# from the first record.
SOURCE, CUT = "_video_source", "_hashtags_cut"  # kept beside a post until it is accepted
IDENTITY_FIELDS = ("user_id", "hashtags", "caption", SOURCE, "created_at", "sound", "duration")


class PostBuilder:
    """Turns raw records into posts, collecting problems.

    A post_id seen again is the same post when its identity fields agree (a scrape that
    collected it twice): the first record is kept and the repeat counted in `merged`; where
    they disagree the repeat is a problem ("duplicate post_id").
    """

    def __init__(
        self,
        mapping: dict[str, str],
        base_dir: Path,
        separator: str | None,
        outside_media: bool = False,
        sounds: SoundNamer | None = None,
    ) -> None:
        self.mapping = mapping
        self.base_dir = base_dir
        self.separator = separator
        self.outside_media = outside_media
        self.sounds = sounds or SoundNamer()
        self.posts: list[dict[str, Any]] = []
        self.media_sources: dict[str, Path] = {}
        self.problems: list[Problem] = []
        self.records_read = 0
        self.merged = 0
        self.hashtags_cut = 0
        self._seen: dict[str, tuple[int, RawRecord]] = {}

    def _get(self, record: RawRecord, name: str) -> Any:
        column = self.mapping.get(name)
        return None if column is None else record.values.get(column)

    def add(self, record: RawRecord, default_post_id: str) -> None:
        self.records_read += 1
        if record.error is not None:
            self._problem(record, record.error_field, "malformed row", record.error)
            return
        try:
            post = self._convert(record, default_post_id)
        except FieldError as exc:
            column = self.mapping.get(exc.field, exc.field)
            self._problem(record, column, exc.reason, str(exc))
            return
        seen = self._seen.get(post["post_id"])
        if seen is not None:
            index, first = seen
            kept = {**self.posts[index], SOURCE: self.media_sources.get(post["post_id"])}
            differs = [
                "video" if name == SOURCE else name
                for name in IDENTITY_FIELDS
                if name in post and not _same(post[name], kept.get(name))
            ]
            if not differs:
                self.merged += 1
                return
            where = f"{first.row_label} {first.row}"
            if first.file != record.file:
                where += f" of {first.file}"
            self._problem(
                record,
                self.mapping.get("post_id", "post_id"),
                "duplicate post_id",
                f"post_id {post['post_id']!r} already used at {where}, with another "
                f"{', '.join(differs)}",
            )
            return
        self._seen[post["post_id"]] = (len(self.posts), record)
        source = post.pop(SOURCE, None)
        if source is not None:
            self.media_sources[post["post_id"]] = source
        self.hashtags_cut += post.pop(CUT)
        self.posts.append(post)

    def _problem(self, record: RawRecord, column: str | None, reason: str, message: str) -> None:
        self.problems.append(
            Problem(record.file, record.row, column, reason, message, record.row_label)
        )

    def _convert(self, record: RawRecord, default_post_id: str) -> dict[str, Any]:
        post_id = (
            required_id(self._get(record, "post_id"), "post_id")
            if "post_id" in self.mapping
            else default_post_id
        )
        user_id = required_id(self._get(record, "user_id"), "user_id")
        post: dict[str, Any] = {"post_id": post_id, "user_id": user_id}
        parsed = parse_hashtag_list(self._get(record, "hashtags"), "hashtags", self.separator)
        post[CUT] = parsed.cut
        tags = parsed.tags
        caption = text_value(self._get(record, "caption"), "caption")
        if caption is not None:
            caption, in_caption = extract_from_caption(caption)
            tags = list(dict.fromkeys([*tags, *in_caption]))
        post["hashtags"] = tags
        if "caption" in self.mapping:
            post["caption"] = caption or None
        if "video" in self.mapping:
            video = self._get(record, "video")
            post[SOURCE] = _video_source(video, self.base_dir, self.outside_media)
            post["video"] = None
        if "created_at" in self.mapping:
            post["created_at"] = parse_timestamp(self._get(record, "created_at"))
        if "sound" in self.mapping:
            title = text_value(self._get(record, "sound"), "sound")
            post["sound"] = self.sounds.identity(title, user_id)
        if "duration" in self.mapping:
            post["duration"] = parse_duration(self._get(record, "duration"))
        for name in (*ENGAGEMENT_FIELDS, *USER_COUNTER_FIELDS):
            if name in self.mapping:
                post[name] = parse_count(self._get(record, name), name)
        if "split" in self.mapping:
            post["split"] = _split_label(self._get(record, "split"))
        return post

    def result(self) -> ImportResult:
        posts = pd.DataFrame(self.posts)
        counters = [name for name in USER_COUNTER_FIELDS if name in posts]
        users = None
        if counters:
            users = latest_user_counters(posts, counters)
            posts = posts.drop(columns=counters)
        return ImportResult(
            posts, users, self.problems, self.records_read, self.merged, self.hashtags_cut
        )


def _same(a: Any, b: Any) -> bool:
    missing_a = a is None or (isinstance(a, float) and math.isnan(a))
    missing_b = b is None or (isinstance(b, float) and math.isnan(b))
    return missing_a == missing_b and (missing_a or a == b)


def latest_user_counters(posts: pd.DataFrame, counters: list[str]) -> pd.DataFrame:
    """One row per user with each counter (followers, total likes, total posts) as stated on
    their latest post that states it.

    Counters change over time; "latest" is by created_at where present, then by row.
    """
    frame = posts[["user_id", *counters]].assign(_row=range(len(posts)))
    sort_keys = ["_row"]
    if "created_at" in posts:
        frame["_time"] = posts["created_at"]
        sort_keys = ["_time", "_row"]
    users = pd.DataFrame({"user_id": posts["user_id"].drop_duplicates().to_numpy()})
    for name in counters:
        stated = frame.dropna(subset=[name]).sort_values(sort_keys, na_position="first")
        last = stated.groupby("user_id", sort=False)[name].last()
        users[name] = users["user_id"].map(last).astype("Int64")
    return users


def media_name(post_id: str, source: Path) -> str:
    """A file name for a post's video inside media/: safe characters plus a short hash."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", post_id)[:60]
    digest = hashlib.sha1(post_id.encode("utf-8")).hexdigest()[:8]
    return f"{safe}-{digest}{source.suffix.lower()}"


def _place_media(out: Path, result: ImportResult, sources: dict[str, Path], mode: str) -> None:
    if not sources:
        return
    media = out / MEDIA_DIR
    media.mkdir(exist_ok=True)
    relative: dict[str, str] = {}
    for post_id, source in sources.items():
        name = media_name(post_id, source)
        target = media / name
        if target.exists() or target.is_symlink():
            target.unlink()
        try:
            if mode == "symlink":
                target.symlink_to(source)
            elif mode == "hardlink":
                os.link(source, target)
            else:
                shutil.copyfile(source, target)
        except OSError as exc:
            hint = " (try --media copy)" if mode != "copy" else ""
            message = f"cannot {mode} {source} into the dataset: {exc.strerror}{hint}"
            raise MishonError(message) from None
        relative[post_id] = f"{MEDIA_DIR}/{name}"
    result.posts["video"] = result.posts["post_id"].map(relative)


# --------------------------------------------------------------------------- entry points


def source_columns(path: Path, settings: ImportSettings) -> list[str]:
    """The column names of a CSV/TSV source's header, or the keys of a JSON-lines source's
    first object (empty where there is none to read: the import says why later)."""
    if settings.format == "jsonl":
        for _number, text in _numbered_lines(path, settings.encoding):
            try:
                first = json.loads(text)
            except json.JSONDecodeError:
                return []
            return [str(key) for key in first] if isinstance(first, dict) else []
        return []
    delimiter = "," if settings.format == "csv" else "\t"
    with _open_text(path, settings.encoding) as handle:
        for _number, cells, _error, _cell in _delimited_records(handle, delimiter):
            return [cell.strip() for cell in cells or []]
    return []


def full_mapping(path: Path, settings: ImportSettings) -> tuple[dict[str, str], list[str]]:
    """`settings.mapping` completed with every field whose name is a column of `path` (a CSV
    whose headers already are the field names needs no --map), and the fields so implied; a
    MishonError, naming the source's columns, where user_id or hashtags-or-caption is missing."""
    columns = source_columns(path, settings)
    mapped = set(settings.mapping.values())
    implied = [
        f for f in MAPPABLE_FIELDS if f not in settings.mapping and f in columns and f not in mapped
    ]
    mapping = {**settings.mapping, **{field: field for field in implied}}
    if "user_id" not in mapping:
        raise MishonError(
            f"{path}: no user_id column; map one with --map user_id=COLUMN (its columns: {columns})"
        )
    if "hashtags" not in mapping and "caption" not in mapping:
        raise MishonError(
            f"{path}: neither a hashtags nor a caption column; map one with --map "
            f"hashtags=COLUMN or caption=COLUMN (its columns: {columns})"
        )
    return mapping, implied


def _records(src: Path, settings: ImportSettings) -> Iterator[tuple[RawRecord, str]]:
    if settings.format == "howyoutagtweets":
        yield from _howyoutagtweets_records(src, settings.encoding)
        return
    columns = list(dict.fromkeys(settings.mapping.values()))
    if settings.format == "jsonl":
        reader = read_jsonl(src, settings.encoding)
    else:
        delimiter = "," if settings.format == "csv" else "\t"
        reader = read_delimited(src, delimiter, columns, settings.encoding)
    for record in reader:
        yield record, f"{src.stem}-{record.row}"


def _howyoutagtweets_records(src: Path, encoding: str) -> Iterator[tuple[RawRecord, str]]:
    """#HowYouTagTweets: text, user id, then one hashtag per column; no header, no quoting."""
    if not src.is_dir():
        raise InputError.single(src, "expected the #HowYouTagTweets folder (train/valid/test.tsv)")
    for split, name in HOWYOUTAGTWEETS_FILES:
        path = src / name
        for number, line in _numbered_lines(path, encoding):
            cells = line.split("\t")
            if len(cells) < 2:
                error = "expected at least 2 tab-separated columns (text, user id)"
                record = RawRecord(str(path), number, {}, error=error)
            else:
                values = {"caption": cells[0], "user_id": cells[1], "hashtags": cells[2:]}
                record = RawRecord(str(path), number, {**values, "split": split})
            yield record, f"{split}-{number:05d}"


HOWYOUTAGTWEETS_MAPPING = {name: name for name in ("caption", "user_id", "hashtags", "split")}


def import_dataset(
    src: Path | Sequence[Path], out: Path, settings: ImportSettings, overwrite: bool = False
) -> ImportResult:
    """Import `src` (one source, or several of one format and mapping) into the dataset
    directory `out`.

    Records of one post_id in several sources (or twice in one) are merged when they agree
    (see PostBuilder). Raises InputError listing every bad record unless `settings.skip_bad`.
    """
    sources = [src] if isinstance(src, Path) else list(src)
    _check_sources(sources, settings)
    implied: list[str] = []
    if settings.format == "howyoutagtweets":
        mapping = HOWYOUTAGTWEETS_MAPPING
    else:
        mapping, implied = full_mapping(sources[0], settings)
        settings = settings.model_copy(update={"mapping": mapping})
    builder = PostBuilder(
        mapping,
        sources[0],
        settings.hashtag_separator,
        settings.allow_outside_media,
        SoundNamer(settings.original_sound_titles),
    )
    for source in sources:
        builder.base_dir = source if source.is_dir() else source.parent
        _check_not_source(source, builder.base_dir, out)
        for record, default_id in _records(source, settings):
            builder.add(record, default_id)
    result = builder.result()
    result.implied = implied
    _check_media_outside(builder.media_sources, out)
    if result.problems and not settings.skip_bad:
        raise InputError(result.problems)
    named = ", ".join(str(s) for s in sources)
    if result.posts.empty:
        raise MishonError(
            f"{named}: no post could be imported ({builder.records_read} records read)"
        )
    manifest: dict[str, Any] = {
        "format_version": 1,
        "name": out.name,
        "created_by": f"mishon {__version__} data import",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": {
            "path": str(sources[0]) if len(sources) == 1 else [str(s) for s in sources],
            "format": settings.format,
            "mapping": mapping,
        },
        "records_read": result.records_read,
        "posts": len(result.posts),
        "merged_repeats": result.merged,
        "skipped": len(result.problems),
        "hashtags_cut_at_whitespace": result.hashtags_cut,
    }
    if settings.original_sound_titles:
        manifest["source"]["original_sound_titles"] = settings.original_sound_titles
    with building_dir(out, overwrite) as stage:
        _place_media(stage, result, builder.media_sources, settings.media)
        if result.problems:
            write_json(
                {
                    "skipped_by_reason": result.skipped_by_reason(),
                    "skipped": [p.to_dict() for p in result.problems],
                },
                stage / "import_report.json",
            )
        write_dataset(stage, result.posts, result.users, manifest)
    return result


def _check_sources(sources: list[Path], settings: ImportSettings) -> None:
    """At least one source, none twice, and (where post ids come from file and line) no two
    files of one name, whose ids would collide."""
    if not sources:
        raise MishonError("no source to import")
    if settings.format == "howyoutagtweets" and len(sources) > 1:
        raise MishonError("the howyoutagtweets format reads one folder")
    resolved = [s.resolve() for s in sources]
    twice = [s for s, r in zip(sources, resolved, strict=True) if resolved.count(r) > 1]
    if twice:
        raise MishonError(f"source {twice[0]} is given more than once")
    stems = [s.stem for s in sources]
    if "post_id" not in settings.mapping and len(set(stems)) < len(stems):
        raise MishonError(
            "without a post_id column, post ids are FILE-LINE: sources must have distinct names "
            "(or map post_id)"
        )


def _check_media_outside(sources: dict[str, Path], out: Path) -> None:
    """No video may lie inside the dataset directory being written: the new dataset replaces
    it, so a copy or link would lose the only file (a symlink would point at itself)."""
    target = out.resolve()
    inside = [(post, path) for post, path in sources.items() if path.is_relative_to(target)]
    if inside:
        post, path = inside[0]
        raise MishonError(
            f"{len(inside)} video(s) lie inside the output directory {out} (post {post!r}: "
            f"{path}), which this import replaces: import into another directory, or move the "
            "videos out of it first"
        )


def _check_not_source(src: Path, base_dir: Path, out: Path) -> None:
    """The dataset directory must not be, hold, or lie inside the source (or its folder)."""
    target, source, folder = out.resolve(), src.resolve(), base_dir.resolve()
    if target in (source, folder) or source.is_relative_to(target):
        raise MishonError(f"the output directory {out} must not be or hold the source {src}")
    if src.is_dir() and target.is_relative_to(source):
        raise MishonError(f"the output directory {out} must not lie inside the source {src}")
