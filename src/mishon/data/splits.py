"""Train / valid / test splits (DESIGN section 2).

- temporal: all posts ordered by created_at (ties by post_id); the earliest go to train, the
  latest to test.
- random: per user, a seeded shuffle; every user keeps at least one training post.
- given: the `split` column the dataset shipped with.
- cold-start: a base split for everyone, then a share of users is held out: their base-train
  posts become `excluded` (used by no stage), so they have no history at all, and their later
  (base valid/test) posts are cold-start validation and test cases.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mishon.config import SplitSettings
from mishon.data.schema import EXCLUDED_LABEL, POSTS_FILE, label_sort_key
from mishon.data.store import read_posts, split_path, write_split
from mishon.errors import InputError, MishonError, Problem


def default_strategy(posts: pd.DataFrame) -> str:
    """given where the dataset ships a split, temporal where every post has a time, else random."""
    if "split" in posts and posts["split"].notna().all():
        return "given"
    if "created_at" in posts and posts["created_at"].notna().all():
        return "temporal"
    return "random"


def make_split(posts: pd.DataFrame, settings: SplitSettings) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Assign every post a label; return (post_id, split) rows and metadata describing them."""
    strategy = settings.strategy or default_strategy(posts)
    meta: dict[str, Any] = {"strategy": strategy, "settings": settings.model_dump(mode="json")}
    if strategy == "cold-start":
        base = settings.cold_base or default_strategy(posts)
        labels = _base_labels(posts, base, settings, meta)
        cold = choose_cold_users(posts, labels, settings.cold_user_fraction, settings.seed)
        held_out = posts["user_id"].isin(cold).to_numpy()
        labels = np.where(held_out & (labels == "train"), EXCLUDED_LABEL, labels)
        meta.update(base=base, cold_users=sorted(cold))
    else:
        labels = _base_labels(posts, strategy, settings, meta)
    assignment = pd.DataFrame({"post_id": posts["post_id"].to_numpy(), "split": labels})
    labelled = posts["hashtags"].str.len().to_numpy() > 0
    meta["counts"] = {
        label: {
            "posts": int((labels == label).sum()),
            "labelled": int(((labels == label) & labelled).sum()),
        }
        for label in sorted(set(labels.tolist()), key=label_sort_key)
    }
    return assignment, meta


def split_dataset(
    dataset: Path, settings: SplitSettings, name: str | None = None, overwrite: bool = False
) -> tuple[str, dict[str, Any]]:
    """Make a split of `dataset` and store it as splits/NAME (default: the strategy's name).

    Returns the name and the split's metadata (strategy, counts, fingerprint, ...).
    """
    assignment, meta = make_split(read_posts(dataset), settings)
    split_name = name or meta["strategy"]
    target = split_path(dataset, split_name)
    if target.exists() and not overwrite:
        raise MishonError(
            f"split {split_name!r} exists in {dataset}; pass --overwrite or another --name"
        )
    write_split(dataset, split_name, assignment, meta)
    return split_name, json.loads(target.with_suffix(".json").read_text("utf-8"))


def _base_labels(
    posts: pd.DataFrame, strategy: str, settings: SplitSettings, meta: dict[str, Any]
) -> np.ndarray:
    if strategy == "given":
        return given_labels(posts)
    if strategy == "temporal":
        labels, bounds = temporal_labels(posts, settings.valid_fraction, settings.test_fraction)
        meta["time_bounds"] = bounds
        return labels
    if strategy == "random":
        return random_labels(posts, settings.valid_fraction, settings.test_fraction, settings.seed)
    raise MishonError(f"unknown split strategy {strategy!r}")


def _missing_rows(posts: pd.DataFrame, column: str, reason: str, hint: str) -> InputError:
    rows = (
        np.flatnonzero(posts[column].isna().to_numpy())
        if column in posts
        else np.arange(len(posts))
    )
    problems = [
        Problem(POSTS_FILE, f"{r + 1} (post_id {posts['post_id'].iat[r]!r})", column, reason, hint)
        for r in rows
    ]
    return InputError(problems)


def given_labels(posts: pd.DataFrame) -> np.ndarray:
    """The dataset's own split column; every post must have a label."""
    if "split" not in posts or posts["split"].isna().any():
        raise _missing_rows(
            posts, "split", "missing split", "the given strategy needs a split label on every post"
        )
    return posts["split"].to_numpy(dtype=object).astype(str)


def temporal_labels(
    posts: pd.DataFrame, valid_fraction: float, test_fraction: float
) -> tuple[np.ndarray, dict[str, str]]:
    """Earliest posts train, latest test, by created_at then post_id."""
    if "created_at" not in posts or posts["created_at"].isna().any():
        raise _missing_rows(
            posts,
            "created_at",
            "missing timestamp",
            "the temporal strategy needs created_at on every post",
        )
    order = np.lexsort((posts["post_id"].to_numpy(dtype=str), posts["created_at"].to_numpy()))
    n = len(posts)
    n_test = round(n * test_fraction)
    n_valid = round(n * valid_fraction)
    n_train = n - n_valid - n_test
    labels = np.empty(n, dtype=object)
    labels[order[:n_train]] = "train"
    labels[order[n_train : n_train + n_valid]] = "valid"
    labels[order[n_train + n_valid :]] = "test"
    times = posts["created_at"].to_numpy()
    bounds = {}
    if n_train:
        bounds["train_last"] = str(pd.Timestamp(times[order[n_train - 1]]))
    if n_valid + n_test:
        bounds["heldout_first"] = str(pd.Timestamp(times[order[n_train]]))
    return labels.astype(str), bounds


def random_labels(
    posts: pd.DataFrame, valid_fraction: float, test_fraction: float, seed: int
) -> np.ndarray:
    """Per user, shuffle and cut; counts use seeded stochastic rounding so small users average out.

    Every user keeps at least one training post.
    """
    rng = np.random.default_rng(seed)
    labels = np.full(len(posts), "train", dtype=object)
    groups = posts.groupby("user_id", sort=True).indices
    for user in sorted(groups):
        rows = np.sort(groups[user])
        n = len(rows)
        n_test = int(np.floor(n * test_fraction + rng.random()))
        n_valid = int(np.floor(n * valid_fraction + rng.random()))
        overflow = n_test + n_valid - (n - 1)
        if overflow > 0:  # keep one training post
            cut = min(overflow, n_valid)
            n_valid -= cut
            n_test -= overflow - cut
        shuffled = rng.permutation(rows)
        labels[shuffled[:n_test]] = "test"
        labels[shuffled[n_test : n_test + n_valid]] = "valid"
    return labels.astype(str)


def choose_cold_users(
    posts: pd.DataFrame, labels: np.ndarray, fraction: float, seed: int
) -> set[str]:
    """A seeded sample of `fraction` of all users, among those with a labelled post to test.

    Only users who have a labelled valid or test post under the base split can be cold-start
    cases; they are the candidates.
    """
    labelled = posts["hashtags"].str.len().to_numpy() > 0
    heldout = np.isin(labels, ["valid", "test"]) & labelled
    candidates = np.sort(posts.loc[heldout, "user_id"].unique().astype(str))
    n_users = posts["user_id"].nunique()
    n_cold = min(len(candidates), max(1, round(fraction * n_users)))
    if n_cold == 0:
        raise MishonError(
            "no user has a labelled valid/test post: a cold-start split is impossible"
        )
    rng = np.random.default_rng(seed)
    return set(rng.choice(candidates, size=n_cold, replace=False).tolist())
