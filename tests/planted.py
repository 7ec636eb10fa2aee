"""A planted dataset where the right hashtags need both the user and the content."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mishon.config import RunSettings, SplitSettings
from mishon.data.schema import POSTS_SCHEMA
from mishon.data.splits import make_split
from mishon.data.store import read_posts, write_split, write_table
from mishon.features.base import Modality
from mishon.features.imported import import_vectors

TOPICS = 4


def write_given_split(root: Path, posts: pd.DataFrame) -> Path:
    """Write `posts` (with a `split` column) as a dataset at `root` with its 'given' split."""
    root.mkdir(parents=True, exist_ok=True)
    write_table(posts, root / "posts.parquet", POSTS_SCHEMA)
    assignment, meta = make_split(read_posts(root), SplitSettings(strategy="given"))
    write_split(root, "given", assignment, meta)
    return root


def planted_dataset(
    root: Path,
    users: int = 16,
    posts_per_user: int = 8,
    seed: int = 0,
    modalities: tuple[str, ...] = ("textual",),
    cold_users: int = 0,
) -> Path:
    """Users with a favourite topic; each post carries its topic's tag and its user's own tag.

    The textual vector is the topic's direction plus noise, so content tells the topic tag and
    the user tells the personal tag: popularity can get neither, MISHON can learn both. Other
    `modalities` get vectors of their own topic directions; `cold_users` more users have one
    test post each and no training post.
    """
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(TOPICS, 16)).astype(np.float32)
    rows, vectors = [], []
    for u in range(users):
        for p in range(posts_per_user):
            topic = int(rng.integers(TOPICS))
            split = (
                "train"
                if p < posts_per_user - 2
                else ("valid" if p == posts_per_user - 2 else "test")
            )
            rows.append(
                {
                    "post_id": f"u{u}p{p}",
                    "user_id": f"u{u}",
                    "hashtags": [f"topic{topic}", f"mine{u}"],
                    "split": split,
                }
            )
            vectors.append(directions[topic] + 0.3 * rng.normal(size=16))
    topics = [int(r["hashtags"][0].removeprefix("topic")) for r in rows]
    for u in range(users, users + cold_users):
        topic = int(rng.integers(TOPICS))
        topics.append(topic)
        rows.append(
            {
                "post_id": f"u{u}p0",
                "user_id": f"u{u}",
                "hashtags": [f"topic{topic}", f"mine{u}"],
                "split": "test",
            }
        )
        vectors.append(directions[topic] + 0.3 * rng.normal(size=16))
    posts = pd.DataFrame(rows)
    write_given_split(root, posts)
    np.save(root.parent / "v.npy", np.stack(vectors).astype(np.float32))
    (root.parent / "ids.txt").write_text("\n".join(posts["post_id"]) + "\n")
    if "textual" in modalities:
        import_vectors(root, Modality.TEXTUAL, root.parent / "v.npy", root.parent / "ids.txt")
    others = np.random.default_rng(seed + 1)
    for modality in (m for m in modalities if m != "textual"):
        own = others.normal(size=(TOPICS, 12)).astype(np.float32)
        values = own[topics] + 0.5 * others.normal(size=(len(topics), 12))
        np.save(root.parent / f"{modality}.npy", values.astype(np.float32))
        import_vectors(
            root, Modality(modality), root.parent / f"{modality}.npy", root.parent / "ids.txt"
        )
    return root


def small_settings(**train: object) -> RunSettings:
    return RunSettings.model_validate(
        {
            "graph": {"textual": {"k": 5, "threshold": 0.2}, "user": {"k": 3}},
            "model": {"hidden": 32, "attention_dim": 8, "min_count": 1, "dropout": 0.1},
            "train": {"epochs": 60, "eval_every": 5, "patience": 30, "lr": 0.02, **train},
        }
    )
