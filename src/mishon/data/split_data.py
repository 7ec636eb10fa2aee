"""What an evaluation sees: a dataset's posts under a split, and its test cases.

Excluded posts (a cold-start split's held-out history) are dropped. A test case is a labelled
post of the evaluated part (test, or valid for tuning); it is warm when its user has a training
post and cold otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mishon.data.schema import EXCLUDED_LABEL, POSTS_FILE
from mishon.data.store import read_posts, read_split, split_fingerprint
from mishon.errors import MishonError
from mishon.lineage import file_digest


@dataclass
class SplitData:
    """Posts of a split (excluded ones removed) with their labels and time order."""

    dataset: Path
    split_name: str
    posts: pd.DataFrame  # columns of posts.parquet plus "split"
    rows: np.ndarray  # row of each post in posts.parquet (to index feature stores)
    all_post_ids: list[str]  # every post of posts.parquet, in order (feature stores follow it)
    fingerprint: str = ""  # of the split's post assignment
    posts_fingerprint: str = ""  # of posts.parquet

    @property
    def is_train(self) -> np.ndarray:
        return (self.posts["split"] == "train").to_numpy()

    def cases(self, part: str) -> np.ndarray:
        """Positions of the labelled posts of `part` (test or valid)."""
        labelled = self.posts["hashtags"].str.len().to_numpy() > 0
        return np.flatnonzero((self.posts["split"] == part).to_numpy() & labelled)

    def warm_users(self) -> set[str]:
        return set(self.posts.loc[self.is_train, "user_id"].astype(str))

    def time_key(self) -> np.ndarray:
        """A sortable time per post: created_at in seconds, else the table position."""
        if "created_at" in self.posts and self.posts["created_at"].notna().all():
            return self.posts["created_at"].astype("int64").to_numpy() / 1e6
        return self.rows.astype(np.float64)


def load_split_data(dataset: Path, split_name: str) -> SplitData:
    """The posts of `dataset` under the stored split `split_name`."""
    posts = read_posts(dataset)
    split = read_split(dataset, split_name)
    labels = posts["post_id"].map(split.set_index("post_id")["split"])
    if labels.isna().any():
        raise MishonError(
            f"split {split_name!r} does not cover every post: rerun `mishon data split`"
        )
    keep = (labels != EXCLUDED_LABEL).to_numpy()
    rows = np.flatnonzero(keep)
    frame = posts.iloc[rows].reset_index(drop=True)
    frame["split"] = labels.iloc[rows].to_numpy()
    return SplitData(
        dataset,
        split_name,
        frame,
        rows,
        posts["post_id"].astype(str).tolist(),
        fingerprint=split_fingerprint(split),
        posts_fingerprint=file_digest(dataset / POSTS_FILE),
    )
