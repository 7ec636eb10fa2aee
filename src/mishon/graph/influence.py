"""Social influence and cold-start linking (DESIGN section 5, Algorithm 1 as we read it).

- Engagement rate of a user: the mean over their training posts of (likes + comments + shares)
  divided by the user's followers, or by the post's views where followers are unknown.
- Adoption (where a dataset has no engagement figures): for every hashtag, the user of its
  earliest training post is its originator; a user's score is the number of (hashtag, other
  user) pairs where the other user used a hashtag this user originated in a later post.
- Popular users: the top `fraction` by influence among users with at least `min_posts` training
  posts.
- A cold-start user (no training post) is linked to the `k` popular users whose content profile
  (mean pooled vectors of their training posts) is closest to the profile of the cold user's own
  posts: cosine per modality, averaged over the modalities both have.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp


@dataclass(frozen=True)
class Influence:
    measure: str  # "engagement" or "adoption"
    scores: np.ndarray  # float64 [U], NaN where a user has no training post or no figure
    popular: np.ndarray  # user indices, most influential first


def has_engagement(train: pd.DataFrame, followers: np.ndarray | None) -> bool:
    """Whether engagement rates can be computed: interactions and followers or views."""
    interactions = any(
        f in train and train[f].notna().any() for f in ("likes", "comments", "shares")
    )
    denominators = (followers is not None and np.isfinite(followers).any()) or (
        "views" in train and train["views"].notna().any()
    )
    return interactions and denominators


def engagement_scores(
    train: pd.DataFrame, user_index: np.ndarray, followers: np.ndarray | None, n_users: int
) -> np.ndarray:
    """Mean engagement rate per user over their training posts (NaN where undefined)."""
    interactions = np.zeros(len(train))
    for field in ("likes", "comments", "shares"):
        if field in train:
            interactions += train[field].fillna(0).to_numpy(dtype=np.float64)
    base = np.full(len(train), np.nan)
    if followers is not None:
        base = followers[user_index].astype(np.float64)
    if "views" in train:
        views = train["views"].to_numpy(dtype=np.float64, na_value=np.nan)
        base = np.where(np.isfinite(base) & (base > 0), base, views)
    rates = np.where(
        np.isfinite(base) & (base > 0), interactions / np.where(base > 0, base, 1), np.nan
    )
    frame = pd.DataFrame({"user": user_index, "rate": rates})
    means = frame.groupby("user")["rate"].mean()
    scores = np.full(n_users, np.nan)
    scores[means.index.to_numpy()] = means.to_numpy()
    return scores


def adoption_scores(
    user_index: np.ndarray, tag_lists: list[list[str]], order: np.ndarray, n_users: int
) -> np.ndarray:
    """Adoptions of the hashtags each user originated (`order`: training posts, earliest first)."""
    originator: dict[str, int] = {}
    adopters: dict[str, set[int]] = {}
    for position in order.tolist():
        user = int(user_index[position])
        for tag in tag_lists[position]:
            first = originator.setdefault(tag, user)
            if user != first:
                adopters.setdefault(tag, set()).add(user)
    scores = np.zeros(n_users)
    for tag, first in originator.items():
        scores[first] += len(adopters.get(tag, ()))
    has_posts = np.zeros(n_users, dtype=bool)
    has_posts[user_index] = True
    return np.where(has_posts, scores, np.nan)


def choose_popular(
    scores: np.ndarray, train_posts: np.ndarray, fraction: float, min_posts: int
) -> np.ndarray:
    """Indices of the top `fraction` (at least one) of eligible users, best first."""
    eligible = np.flatnonzero((train_posts >= min_posts) & np.isfinite(scores))
    if len(eligible) == 0:
        return np.zeros(0, dtype=np.int64)
    count = max(1, round(fraction * len(eligible)))
    order = np.lexsort((eligible, -scores[eligible]))
    return eligible[order[:count]]


def measure_influence(
    train: pd.DataFrame,
    user_index: np.ndarray,
    order: np.ndarray,
    followers: np.ndarray | None,
    n_users: int,
    measure: str,
    fraction: float,
    min_posts: int,
) -> Influence:
    """Influence by the requested measure ('auto' picks engagement where the data allows)."""
    if measure == "auto":
        measure = "engagement" if has_engagement(train, followers) else "adoption"
    if measure == "engagement":
        scores = engagement_scores(train, user_index, followers, n_users)
    else:
        scores = adoption_scores(user_index, train["hashtags"].tolist(), order, n_users)
    train_posts = np.bincount(user_index, minlength=n_users)
    return Influence(measure, scores, choose_popular(scores, train_posts, fraction, min_posts))


def user_profiles(
    vectors: np.ndarray, present: np.ndarray, owners: np.ndarray, n_users: int
) -> tuple[np.ndarray, np.ndarray]:
    """Unit mean vector per user over the given posts ([U, D]) and whether a user has one."""
    rows = np.flatnonzero(present)
    membership = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (owners[rows], rows)), shape=(n_users, len(vectors))
    )
    sums = np.asarray(membership @ vectors)  # float32: a float64 copy would double the memory
    norms = np.linalg.norm(sums, axis=1)
    has = norms > 1e-12
    profiles = np.zeros(sums.shape, dtype=np.float32)
    profiles[has] = (sums[has] / norms[has, None]).astype(np.float32)
    return profiles, has


def link_cold_users(
    cold: np.ndarray,
    popular: np.ndarray,
    cold_profiles: list[tuple[np.ndarray, np.ndarray]],
    popular_profiles: list[tuple[np.ndarray, np.ndarray]],
    k: int,
) -> list[tuple[int, int, float]]:
    """(cold user, popular user, similarity) links: each cold user to its k closest popular users.

    Profiles are (vectors [U, D], has [U]) per modality. A cold user with no content in any
    modality shared with the popular users is linked to the k most influential ones (similarity
    0), so that it still receives their hashtags.
    """
    if len(popular) == 0 or k == 0:
        return []
    links: list[tuple[int, int, float]] = []
    for user in cold.tolist():
        total = np.zeros(len(popular))
        count = np.zeros(len(popular))
        for (cold_vectors, cold_has), (pop_vectors, pop_has) in zip(
            cold_profiles, popular_profiles, strict=True
        ):
            if not cold_has[user]:
                continue
            usable = pop_has[popular]
            total[usable] += pop_vectors[popular[usable]] @ cold_vectors[user]
            count[usable] += 1
        similarity = np.where(count > 0, total / np.maximum(count, 1), -np.inf)
        if not np.isfinite(similarity).any():
            chosen = np.arange(min(k, len(popular)))  # popular is ordered by influence
            links.extend((user, int(popular[i]), 0.0) for i in chosen)
            continue
        order = np.lexsort((np.arange(len(popular)), -similarity))[:k]
        links.extend(
            (user, int(popular[i]), float(similarity[i]))
            for i in order
            if np.isfinite(similarity[i])
        )
    return links
