"""Descriptive statistics of a dataset directory (`mishon data stats`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mishon.data.schema import ENGAGEMENT_FIELDS, USER_COUNTER_FIELDS, label_sort_key
from mishon.data.store import list_splits, read_posts, read_split, read_users


def _distribution(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {"mean": 0.0, "median": 0.0, "min": 0.0, "max": 0.0}
    return {
        "mean": round(float(values.mean()), 3),
        "median": float(np.median(values)),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def dataset_stats(root: Path) -> dict[str, Any]:
    """Counts and distributions that describe the dataset at `root`."""
    posts = read_posts(root)
    users = read_users(root)
    tag_lists = posts["hashtags"]
    per_post = tag_lists.str.len().to_numpy()
    labelled = per_post > 0
    tag_counts = Counter(t for tags in tag_lists for t in tags)
    per_user = posts.groupby("user_id").size().to_numpy()
    stated = users if users is not None else pd.DataFrame()
    counters = [f for f in USER_COUNTER_FIELDS if f in stated and stated[f].notna().any()]
    stats: dict[str, Any] = {
        "posts": len(posts),
        "posts_without_hashtags": int((~labelled).sum()),
        "users": int(posts["user_id"].nunique()),
        "hashtags": len(tag_counts),
        "hashtag_occurrences": int(per_post.sum()),
        "hashtags_used_once": sum(1 for c in tag_counts.values() if c == 1),
        "top_hashtags": tag_counts.most_common(10),
        "hashtags_per_labelled_post": _distribution(per_post[labelled]),
        "posts_per_user": _distribution(per_user),
        "media": _media_coverage(posts),
        "engagement_fields": [
            f for f in ENGAGEMENT_FIELDS if f in posts and posts[f].notna().any()
        ],
        "followers": "followers" in counters,
        "user_counters": counters,
        "time_range": _time_range(posts),
        "given_split": _label_counts(posts["split"]) if "split" in posts else None,
        "splits": {name: _split_counts(root, name, posts) for name in list_splits(root)},
    }
    return stats


def _media_coverage(posts: pd.DataFrame) -> dict[str, int]:
    has_video = int(posts["video"].notna().sum()) if "video" in posts else 0
    caption = posts["caption"] if "caption" in posts else pd.Series(dtype=str)
    has_caption = int((caption.notna() & (caption.astype(str).str.strip() != "")).sum())
    sound = posts["sound"] if "sound" in posts else pd.Series(dtype=str)
    duration = posts["duration"] if "duration" in posts else pd.Series(dtype=float)
    return {
        "with_video": has_video,
        "with_caption": has_caption,
        "with_sound": int(sound.notna().sum()),
        "sounds": int(sound.nunique()),
        "with_duration": int(duration.notna().sum()),
    }


def _time_range(posts: pd.DataFrame) -> dict[str, str] | None:
    if "created_at" not in posts or posts["created_at"].isna().all():
        return None
    times = posts["created_at"].dropna()
    return {
        "first": times.min().isoformat(),
        "last": times.max().isoformat(),
        "missing": int(posts["created_at"].isna().sum()),
    }


def _label_counts(labels: pd.Series) -> dict[str, int]:
    counts = labels.fillna("(none)").value_counts()
    return {str(k): int(counts[k]) for k in sorted(counts.index, key=label_sort_key)}


def _split_counts(root: Path, name: str, posts: pd.DataFrame) -> dict[str, Any]:
    split = read_split(root, name)
    labelled = posts.set_index("post_id")["hashtags"].str.len() > 0
    merged = split.assign(labelled=split["post_id"].map(labelled))
    groups = dict(tuple(merged.groupby("split")))
    return {
        str(label): {"posts": len(groups[label]), "labelled": int(groups[label]["labelled"].sum())}
        for label in sorted(groups, key=label_sort_key)
    }
