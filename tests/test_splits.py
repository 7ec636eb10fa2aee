from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mishon.config import SplitSettings
from mishon.data.splits import default_strategy, make_split
from mishon.errors import InputError


def make_posts(n_users: int = 20, per_user: int = 10, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_users * per_user
    return pd.DataFrame(
        {
            "post_id": [f"p{i:04d}" for i in range(n)],
            "user_id": [f"u{i % n_users:02d}" for i in range(n)],
            "hashtags": [["a"] if i % 17 else [] for i in range(n)],
            "created_at": pd.Timestamp("2026-01-01", tz="UTC")
            + pd.to_timedelta(rng.integers(0, 10_000, n), unit="min"),
        }
    )


def labels_of(posts: pd.DataFrame, **kwargs: object) -> tuple[pd.Series, dict]:
    assignment, meta = make_split(posts, SplitSettings(**kwargs))
    assert assignment["post_id"].tolist() == posts["post_id"].tolist()
    return assignment["split"], meta


def test_temporal_respects_time_order() -> None:
    posts = make_posts()
    labels, meta = labels_of(posts, strategy="temporal")
    times = posts["created_at"]
    assert times[labels == "train"].max() <= times[labels == "valid"].min()
    assert times[labels == "valid"].max() <= times[labels == "test"].min()
    assert labels.value_counts().to_dict() == {"train": 160, "valid": 20, "test": 20}
    assert meta["time_bounds"]["train_last"] <= meta["time_bounds"]["heldout_first"]


def test_temporal_ties_broken_by_post_id() -> None:
    posts = make_posts(2, 5)
    posts["created_at"] = pd.Timestamp("2026-01-01", tz="UTC")
    labels, _ = labels_of(posts, strategy="temporal", valid_fraction=0.2, test_fraction=0.2)
    assert labels.tolist() == ["train"] * 6 + ["valid"] * 2 + ["test"] * 2


def test_temporal_needs_timestamps_and_names_rows() -> None:
    posts = make_posts(2, 3)
    posts.loc[4, "created_at"] = pd.NaT
    with pytest.raises(InputError) as info:
        make_split(posts, SplitSettings(strategy="temporal"))
    assert str(info.value) == (
        "posts.parquet, row 5 (post_id 'p0004'), field 'created_at': "
        "the temporal strategy needs created_at on every post"
    )


def test_random_is_per_user_seeded_and_keeps_a_training_post() -> None:
    posts = make_posts(30, 7)
    posts = pd.concat([posts, make_posts(3, 1).assign(user_id=["solo1", "solo2", "solo3"])])
    posts["post_id"] = [f"q{i}" for i in range(len(posts))]
    first, _ = labels_of(posts, strategy="random", seed=5)
    again, _ = labels_of(posts, strategy="random", seed=5)
    other, _ = labels_of(posts, strategy="random", seed=6)
    assert first.tolist() == again.tolist()
    assert first.tolist() != other.tolist()
    by_user = pd.DataFrame({"user": posts["user_id"].to_numpy(), "split": first.to_numpy()})
    assert (by_user.groupby("user")["split"].apply(lambda s: (s == "train").sum()) >= 1).all()
    shares = first.value_counts(normalize=True)
    assert 0.05 < shares["test"] < 0.15 and 0.05 < shares["valid"] < 0.15


def test_given_uses_the_split_column() -> None:
    posts = make_posts(2, 3).assign(split=["train", "train", "valid", "test", "train", "test"])
    labels, _ = labels_of(posts)
    assert labels.tolist() == posts["split"].tolist()
    assert default_strategy(posts) == "given"
    posts.loc[1, "split"] = None
    assert default_strategy(posts) == "temporal"
    with pytest.raises(InputError, match=r"row 2 .*given strategy needs a split label"):
        make_split(posts, SplitSettings(strategy="given"))


def test_default_strategy_falls_back_to_random() -> None:
    assert default_strategy(make_posts().drop(columns="created_at")) == "random"


def test_cold_start_holds_users_out_of_training() -> None:
    posts = make_posts(40, 10)
    labels, meta = labels_of(posts, strategy="cold-start", cold_user_fraction=0.25, seed=1)
    cold = set(meta["cold_users"])
    assert len(cold) == 10 and meta["base"] == "temporal"
    in_cold = posts["user_id"].isin(cold)
    assert not (labels[in_cold] == "train").any()
    assert set(labels[in_cold]) <= {"excluded", "valid", "test"}
    assert (labels[in_cold] == "test").any()
    warm, _ = labels_of(posts, strategy="temporal")
    # Warm users keep exactly the base split; cold users lose only their training posts.
    assert labels[~in_cold].tolist() == warm[~in_cold].tolist()
    assert (labels[in_cold] == "excluded").tolist() == (warm[in_cold] == "train").tolist()
    again, meta2 = labels_of(posts, strategy="cold-start", cold_user_fraction=0.25, seed=1)
    assert meta2["cold_users"] == meta["cold_users"] and again.tolist() == labels.tolist()


def test_fraction_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="must leave posts for training"):
        SplitSettings(valid_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError):
        SplitSettings(strategy="by-moon-phase")
