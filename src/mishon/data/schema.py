"""The on-disk dataset format: file names, columns and their Arrow types (DESIGN section 2)."""

from __future__ import annotations

import pyarrow as pa

POSTS_FILE = "posts.parquet"
USERS_FILE = "users.parquet"
MANIFEST_FILE = "dataset.json"
SPLITS_DIR = "splits"
MEDIA_DIR = "media"
TRUTH_DIR = "truth"  # ground truth of a synthetic corpus; never read by a model

ENGAGEMENT_FIELDS: tuple[str, ...] = ("likes", "comments", "shares", "views")
# The author's counters as the platform states them (latest stated value per user).
USER_COUNTER_FIELDS: tuple[str, ...] = ("followers", "total_likes", "total_posts")
SPLIT_LABELS: tuple[str, ...] = ("train", "valid", "test")
# A cold-start split keeps a held-out user's earlier (base-train) posts out of every stage.
EXCLUDED_LABEL = "excluded"
VIDEO_EXTENSIONS: frozenset[str] = frozenset({".mp4", ".mov", ".webm", ".mkv", ".m4v", ".avi"})

POSTS_SCHEMA = pa.schema(
    [
        pa.field("post_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("hashtags", pa.list_(pa.string()), nullable=False),
        pa.field("caption", pa.string()),
        pa.field("video", pa.string()),
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
        pa.field("sound", pa.string()),  # the sound's identity (data.sounds)
        pa.field("duration", pa.float64()),  # the clip's length in seconds
        *(pa.field(name, pa.int64()) for name in ENGAGEMENT_FIELDS),
        pa.field("split", pa.string()),
    ]
)
REQUIRED_POST_COLUMNS: tuple[str, ...] = ("post_id", "user_id", "hashtags")

USERS_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        *(pa.field(name, pa.int64()) for name in USER_COUNTER_FIELDS),
    ]
)

SPLIT_SCHEMA = pa.schema(
    [
        pa.field("post_id", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
    ]
)


LABEL_ORDER: tuple[str, ...] = (*SPLIT_LABELS, EXCLUDED_LABEL)


def label_sort_key(label: str) -> tuple[int, str]:
    """Sort split labels as train, valid, test, excluded, then anything else."""
    return (LABEL_ORDER.index(label) if label in LABEL_ORDER else len(LABEL_ORDER), label)


def schema_subset(schema: pa.Schema, columns: list[str]) -> pa.Schema:
    """The fields of `schema` named in `columns`, in the schema's order."""
    return pa.schema([f for f in schema if f.name in columns])
