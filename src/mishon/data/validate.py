"""Validation of a dataset directory against the format of DESIGN section 2.

Returns every problem found (file, row, field, message) rather than stopping at the first, so a
user can fix a dataset in one pass. Rows are numbered from 1 in table order.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePosixPath

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mishon.data.hashtags import extract_from_caption, is_normalized
from mishon.data.schema import (
    ENGAGEMENT_FIELDS,
    EXCLUDED_LABEL,
    POSTS_FILE,
    POSTS_SCHEMA,
    REQUIRED_POST_COLUMNS,
    SPLIT_LABELS,
    SPLITS_DIR,
    USER_COUNTER_FIELDS,
    USERS_FILE,
    USERS_SCHEMA,
    VIDEO_EXTENSIONS,
)
from mishon.errors import Problem

MediaProbe = Callable[[Path], str | None]


def validate_dataset(root: Path, probe_media: MediaProbe | None = None) -> list[Problem]:
    """All problems in the dataset at `root`; an empty list means it is valid.

    `probe_media`, when given, is called on every video path and returns an error message for
    a file that cannot be decoded (None when it is fine).
    """
    posts_path = root / POSTS_FILE
    problems: list[Problem] = []
    if not posts_path.is_file():
        return [Problem(str(posts_path), None, None, "missing file", "posts table not found")]
    table = _read(posts_path, problems)
    if table is None:
        return problems
    problems += _check_columns(posts_path, table, POSTS_SCHEMA, REQUIRED_POST_COLUMNS)
    unusable = {p.field for p in problems if p.reason in ("missing column", "bad type")}
    if unusable & set(REQUIRED_POST_COLUMNS):
        return problems
    # Columns of the wrong type or unknown to the format get no value checks.
    ignored = unusable | {p.field for p in problems if p.reason == "unknown column"}
    posts = table.drop([c for c in table.column_names if c in ignored]).to_pandas()
    problems += _check_posts(root, posts_path, posts, probe_media)
    problems += _check_users(root, set(posts["user_id"].dropna()))
    problems += _check_splits(root, posts)
    return problems


def _read(path: Path, problems: list[Problem]) -> pa.Table | None:
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        problems.append(Problem(str(path), None, None, "unreadable file", f"cannot read: {exc}"))
        return None


def _check_columns(
    path: Path, table: pa.Table, schema: pa.Schema, required: tuple[str, ...]
) -> list[Problem]:
    problems = []
    for name in required:
        if name not in table.column_names:
            problems.append(
                Problem(str(path), None, name, "missing column", "required column missing")
            )
    for name in table.column_names:
        if name not in schema.names:
            problems.append(
                Problem(
                    str(path),
                    None,
                    name,
                    "unknown column",
                    f"not part of the format: {schema.names}",
                )
            )
            continue
        expected = schema.field(name).type
        actual = table.schema.field(name).type
        if not _compatible(actual, expected):
            problems.append(
                Problem(
                    str(path), None, name, "bad type", f"has type {actual}, expected {expected}"
                )
            )
    return problems


def _compatible(actual: pa.DataType, expected: pa.DataType) -> bool:
    if actual.equals(expected):
        return True
    if pa.types.is_timestamp(expected):
        return pa.types.is_timestamp(actual)
    if pa.types.is_integer(expected):
        return pa.types.is_integer(actual)
    if pa.types.is_string(expected):
        return pa.types.is_string(actual) or pa.types.is_large_string(actual)
    if pa.types.is_list(expected):
        return (pa.types.is_list(actual) or pa.types.is_large_list(actual)) and _compatible(
            actual.value_type, expected.value_type
        )
    return False


def _row_problem(
    path: Path, row: int, post_id: object, field: str, reason: str, message: str
) -> Problem:
    label = f"{row + 1} (post_id {post_id!r})" if isinstance(post_id, str) else str(row + 1)
    return Problem(str(path), label, field, reason, message)


def _check_posts(
    root: Path, path: Path, posts: pd.DataFrame, probe_media: MediaProbe | None
) -> list[Problem]:
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    ids = posts["post_id"].tolist()
    for row, post_id in enumerate(ids):
        for field in ("post_id", "user_id"):
            value = posts[field].iat[row]
            if not isinstance(value, str) or not value.strip():
                problems.append(
                    _row_problem(path, row, post_id, field, "missing value", "is empty")
                )
        if isinstance(post_id, str):
            if post_id in seen:
                problems.append(
                    _row_problem(
                        path,
                        row,
                        post_id,
                        "post_id",
                        "duplicate post_id",
                        f"also at row {seen[post_id] + 1}",
                    )
                )
            else:
                seen[post_id] = row
        tags = posts["hashtags"].iat[row]
        if tags is None:
            problems.append(
                _row_problem(path, row, post_id, "hashtags", "missing value", "is null; use []")
            )
        else:
            tags = list(tags)
            bad = [t for t in tags if not isinstance(t, str) or not is_normalized(t)]
            if bad:
                problems.append(
                    _row_problem(
                        path,
                        row,
                        post_id,
                        "hashtags",
                        "unnormalised hashtag",
                        f"{bad[:3]} not normalised (NFKC, lower-case, no '#', no spaces)",
                    )
                )
            if len(set(tags)) != len(tags):
                problems.append(
                    _row_problem(
                        path, row, post_id, "hashtags", "repeated hashtag", "repeats a hashtag"
                    )
                )
    if "caption" in posts:
        for row, caption in enumerate(posts["caption"].tolist()):
            if isinstance(caption, str) and extract_from_caption(caption)[1]:
                problems.append(
                    _row_problem(
                        path,
                        row,
                        ids[row],
                        "caption",
                        "hashtag in caption",
                        "holds hashtags: labels would leak into the input; import it through "
                        "`mishon data import`, which moves them to the hashtags column",
                    )
                )
    for field in (*ENGAGEMENT_FIELDS, "duration"):
        if field in posts:
            values = posts[field]
            for row in values.index[values.notna() & (values < 0)]:
                problems.append(
                    _row_problem(
                        path,
                        int(row),
                        ids[row],
                        field,
                        "bad number",
                        f"must be >= 0, got {values.iat[row]}",
                    )
                )
    if "split" in posts:
        allowed = set(SPLIT_LABELS)
        for row, label in enumerate(posts["split"].tolist()):
            if label is not None and not pd.isna(label) and label not in allowed:
                problems.append(
                    _row_problem(
                        path,
                        row,
                        ids[row],
                        "split",
                        "bad split",
                        f"{label!r} is not one of {SPLIT_LABELS}",
                    )
                )
    if "video" in posts:
        problems += _check_media(root, path, posts, probe_media)
    return problems


def _media_problem(
    root: Path, base: Path, video: str, probe_media: MediaProbe | None
) -> tuple[str, str] | None:
    """(reason, message) for a bad video path or file, None where it is fine."""
    pure = PurePosixPath(video)
    if pure.is_absolute() or ".." in pure.parts:
        return "bad media path", f"{video!r} must be relative, inside the dataset"
    if pure.suffix.lower() not in VIDEO_EXTENSIONS:
        return "bad media type", f"{video!r}: unsupported extension"
    file = root / pure
    if not file.is_file():
        return "unreadable media", f"{video!r} not found"
    # A symlink placed by `import --media symlink` may point outside; anything else must not.
    if not file.is_symlink() and base not in file.resolve().parents:
        return "bad media path", f"{video!r} leaves the dataset"
    if probe_media is not None:
        error = probe_media(file)
        if error:
            return "unreadable media", f"{video!r}: {error}"
    return None


def _check_media(
    root: Path, path: Path, posts: pd.DataFrame, probe_media: MediaProbe | None
) -> list[Problem]:
    problems: list[Problem] = []
    base = root.resolve()
    for row, video in enumerate(posts["video"].tolist()):
        if not isinstance(video, str) or not video:
            continue
        found = _media_problem(root, base, video, probe_media)
        if found is not None:
            reason, message = found
            problems.append(
                _row_problem(path, row, posts["post_id"].iat[row], "video", reason, message)
            )
    return problems


def _check_users(root: Path, post_users: set[str]) -> list[Problem]:
    path = root / USERS_FILE
    if not path.is_file():
        return []
    problems: list[Problem] = []
    table = _read(path, problems)
    if table is None:
        return problems
    problems += _check_columns(path, table, USERS_SCHEMA, ("user_id",))
    if problems:
        return problems
    users = table.to_pandas()
    duplicated = users["user_id"].duplicated(keep="first")
    for row in users.index[duplicated]:
        problems.append(
            Problem(
                str(path),
                int(row) + 1,
                "user_id",
                "duplicate user_id",
                f"{users['user_id'].iat[row]!r} repeated",
            )
        )
    for name in USER_COUNTER_FIELDS:
        if name not in users:
            continue
        negative = users[name].notna() & (users[name] < 0)
        for row in users.index[negative]:
            problems.append(Problem(str(path), int(row) + 1, name, "bad number", "must be >= 0"))
    return problems


def _check_splits(root: Path, posts: pd.DataFrame) -> list[Problem]:
    folder = root / SPLITS_DIR
    if not folder.is_dir():
        return []
    problems: list[Problem] = []
    post_ids = set(posts["post_id"])
    allowed = {*SPLIT_LABELS, EXCLUDED_LABEL}
    for path in sorted(folder.glob("*.parquet")):
        table = _read(path, problems)
        if table is None:
            continue
        if not {"post_id", "split"} <= set(table.column_names):
            problems.append(
                Problem(str(path), None, None, "missing column", "needs post_id and split")
            )
            continue
        split = table.to_pandas()
        bad = ~split["split"].isin(allowed)
        for row in split.index[bad][:20]:
            problems.append(
                Problem(
                    str(path), int(row) + 1, "split", "bad split", f"{split['split'].iat[row]!r}"
                )
            )
        ids = set(split["post_id"])
        if ids != post_ids or len(split) != len(post_ids):
            problems.append(
                Problem(
                    str(path),
                    None,
                    "post_id",
                    "split mismatch",
                    f"covers {len(ids & post_ids)} of {len(post_ids)} posts, "
                    f"{len(ids - post_ids)} unknown, {len(split) - len(ids)} repeated; "
                    "rerun `mishon data split`",
                )
            )
    return problems
