"""Assembling the heterogeneous graph from a dataset, a split and its feature stores.

Nodes: one `user` node per user with a post in the split (excluded posts do not count), and
one node per post in each modality that has features (`visual`, `acoustic`, `textual`); modality
node i is post i of the split's post list. Edges (both directions stored, coalesced, weight =
similarity or 1): user-user (Jaccard top-k plus cold-start links), modality-modality (kNN), and
user-modality (the user posted it). Only training hashtags are read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mishon.config import GraphSettings
from mishon.data.split_data import SplitData, load_split_data
from mishon.data.store import list_splits, read_users
from mishon.errors import MishonError
from mishon.features.store import MANIFEST, FeatureStore, features_fingerprint, modality_dir
from mishon.graph.engine import Engine
from mishon.graph.influence import (
    Influence,
    link_cold_users,
    measure_influence,
    user_profiles,
)
from mishon.graph.jaccard import jaccard_topk, user_hashtag_matrix
from mishon.graph.knn import knn
from mishon.graph.pooled import pooled_vectors
from mishon.lineage import Lineage, digest

log = logging.getLogger("mishon.graph")

MODALITIES = ("visual", "acoustic", "textual")
USER = "user"
# relation names of the seven edge types: (user, SIMILAR, user), (M, SIMILAR, M),
# (user, POSTED, M) and (M, POSTED_BY, user) for each modality M
SIMILAR, POSTED, POSTED_BY = "similar", "posted", "posted_by"
EdgeType = tuple[str, str, str]
StageFn = Callable[[str], None]


@dataclass
class HeteroGraph:
    """Nodes, typed edges (int64 [2, E] index, float32 [E] weight) and what built them."""

    num_nodes: dict[str, int]
    edges: dict[EdgeType, tuple[np.ndarray, np.ndarray]]
    post_ids: list[str]
    user_ids: list[str]
    post_user: np.ndarray  # user node of each post
    post_split: np.ndarray  # split label of each post
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def modalities(self) -> list[str]:
        return [m for m in MODALITIES if m in self.num_nodes]

    @property
    def lineage(self) -> Lineage | None:
        """What the graph was built from (None for a graph built before lineages)."""
        return Lineage.read(self.meta)


def graph_lineage(data: SplitData, settings: GraphSettings, features: str | None = None) -> Lineage:
    """The lineage a graph of `data` with `settings` has: posts, split, features, settings."""
    return Lineage(
        posts=data.posts_fingerprint,
        split=data.fingerprint,
        features=features or features_fingerprint(data.dataset),
        # every value: a graph built with an older default is rebuilt, not reused
        settings=digest(settings.model_dump(mode="json")),
    )


def default_split(dataset: Path) -> str:
    """The dataset's only split, or an error listing the choices."""
    splits = list_splits(dataset)
    if len(splits) == 1:
        return splits[0]
    if not splits:
        raise MishonError(f"{dataset} has no split: run `mishon data split {dataset}` first")
    raise MishonError(f"{dataset} has several splits {splits}: choose one with --split")


def knn_edges(
    neighbours: np.ndarray, similarities: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Directed (node -> neighbour) edges from top-k lists, keeping similarity >= threshold."""
    rows = np.repeat(np.arange(len(neighbours)), neighbours.shape[1])
    cols = neighbours.ravel()
    weights = similarities.ravel()
    keep = (cols >= 0) & (weights >= threshold)
    return np.stack([rows[keep], cols[keep]]), weights[keep].astype(np.float32)


def symmetric(index: np.ndarray, weight: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Both directions of every edge, each (i, j) once (larger weight), sorted, no self loops."""
    both = np.concatenate([index, index[::-1]], axis=1)
    weights = np.concatenate([weight, weight])
    return coalesce(both, weights, n, n)


def coalesce(
    index: np.ndarray, weight: np.ndarray, n_src: int, n_dst: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique edges (by source, then target); a repeated edge keeps its largest weight."""
    keep = index[0] != index[1] if n_src == n_dst else np.ones(index.shape[1], dtype=bool)
    src, dst, w = index[0][keep], index[1][keep], weight[keep]
    key = src.astype(np.int64) * max(n_dst, 1) + dst
    order = np.lexsort((-w, key))
    key, src, dst, w = key[order], src[order], dst[order], w[order]
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    return np.stack([src[first], dst[first]]).astype(np.int64), w[first].astype(np.float32)


def _summary(graph: HeteroGraph) -> dict[str, Any]:
    degrees: dict[str, np.ndarray] = {
        t: np.zeros(n, dtype=np.int64) for t, n in graph.num_nodes.items()
    }
    edges: dict[str, dict[str, Any]] = {}
    for (src, rel, dst), (index, _) in graph.edges.items():
        counts = np.bincount(index[1], minlength=graph.num_nodes[dst])
        degrees[dst] += counts
        edges[f"{src}-{rel}-{dst}"] = {
            "edges": int(index.shape[1]),
            "in_degree": {
                "min": int(counts.min()) if len(counts) else 0,
                "mean": round(float(counts.mean()) if len(counts) else 0.0, 3),
                "median": float(np.median(counts)) if len(counts) else 0.0,
                "max": int(counts.max()) if len(counts) else 0,
            },
        }
    nodes = {
        t: {"nodes": n, "isolated": int((degrees[t] == 0).sum())}
        for t, n in graph.num_nodes.items()
    }
    return {"nodes": nodes, "edges": edges}


@dataclass
class _Posts:
    """The split's posts as the graph builder reads them: ids, users, split labels."""

    data: SplitData
    post_split: np.ndarray
    user_ids: list[str]
    post_user: np.ndarray
    is_train: np.ndarray

    @classmethod
    def of(cls, data: SplitData) -> _Posts:
        posts = data.posts
        user_ids = pd.unique(posts["user_id"].astype(str)).tolist()
        user_of = {u: i for i, u in enumerate(user_ids)}
        post_user = posts["user_id"].astype(str).map(user_of).to_numpy(dtype=np.int64)
        post_split = posts["split"].to_numpy().astype(str)
        return cls(data, post_split, user_ids, post_user, post_split == "train")

    @property
    def n_posts(self) -> int:
        return len(self.data.posts)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)


class _Laps:
    """Seconds per stage, for graph.json."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.clock = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self.clock, 3)
        self.clock = now


def build_graph(
    dataset: Path,
    split_name: str | None,
    settings: GraphSettings,
    stage: StageFn | None = None,
    engine: Engine | None = None,
) -> HeteroGraph:
    """Build the graph of `dataset` under split `split_name` (default: its only split); the
    kNN searches and the Jaccard top-k run on `engine` (default: this process). The steps:
    read the posts, each modality's kNN and ownership edges (`_modality_edges`), the users'
    Jaccard and social-influence edges (`_user_edges`), the metadata (`_graph_meta`)."""
    report = stage or (lambda _name: None)
    lap = _Laps()
    report("reading posts and split")
    split_name = split_name or default_split(dataset)
    data = load_split_data(dataset, split_name)
    posts = _Posts.of(data)
    lap("read")
    num_nodes: dict[str, int] = {"user": posts.n_users}
    edges: dict[EdgeType, tuple[np.ndarray, np.ndarray]] = {}
    skipped: dict[str, str] = {}
    knn_methods: dict[str, dict[str, object]] = {}
    vectors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for modality in MODALITIES:
        found = _modality_edges(dataset, modality, posts, settings, engine, report, lap)
        if isinstance(found, str):
            skipped[modality] = found
            continue
        vectors[modality], knn_methods[modality], modality_edges = found
        num_nodes[modality] = posts.n_posts
        edges.update(modality_edges)
    if not vectors:
        raise MishonError(_no_content_message(dataset, data.posts, skipped))
    user_edge, influence, links = _user_edges(dataset, posts, vectors, settings, engine, report)
    edges[(USER, SIMILAR, USER)] = user_edge
    lap("influence")
    graph = HeteroGraph(
        num_nodes,
        edges,
        data.posts["post_id"].astype(str).tolist(),
        posts.user_ids,
        posts.post_user,
        posts.post_split,
    )
    graph.meta = _graph_meta(dataset, posts, settings, skipped, knn_methods, influence, links)
    graph.meta["summary"] = _summary(graph)
    graph.meta["timings_s"] = lap.timings
    log.info(
        "graph of %s (split %s): %s nodes, %d edges in %d relations",
        dataset, split_name, graph.num_nodes, sum(len(w) for _, w in edges.values()), len(edges),
    )  # fmt: skip
    return graph


def _modality_edges(
    dataset: Path,
    modality: str,
    posts: _Posts,
    settings: GraphSettings,
    engine: Engine | None,
    report: StageFn,
    lap: _Laps,
) -> (
    tuple[
        tuple[np.ndarray, np.ndarray],
        dict[str, object],
        dict[EdgeType, tuple[np.ndarray, np.ndarray]],
    ]
    | str
):
    """One modality's pooled vectors, kNN method and edges (similar posts, ownership both
    ways), or why it is left out."""
    folder = modality_dir(dataset, modality)
    if not (folder / MANIFEST).is_file():
        return "no feature store"
    report(f"pooling {modality} features")
    store = FeatureStore.open(folder)
    if store.post_ids != posts.data.all_post_ids:
        raise MishonError(
            f"{folder} does not match posts.parquet: rerun `mishon extract --overwrite`"
        )
    pooled, present = pooled_vectors(store, posts.data.rows)
    if not present.any():
        return "no post has this modality"
    lap(f"pool_{modality}")
    spec = getattr(settings, modality)
    report(f"{modality} kNN")
    result = knn(
        pooled,
        present,
        spec.k,
        exact_max=settings.exact_max,
        method=settings.index,
        nlist=settings.ivf_nlist,
        nprobe=settings.ivf_nprobe,
        hnsw_m=settings.hnsw_m,
        ef_search=settings.hnsw_ef_search,
        chunk=settings.query_chunk,
        seed=settings.seed,
        target_recall=settings.target_recall,
        recall_queries=settings.recall_queries,
        engine=engine,
    )
    n_posts, n_users = posts.n_posts, posts.n_users
    index, weight = knn_edges(result.neighbours, result.similarities, spec.threshold)
    forward = np.stack([posts.post_user, np.arange(n_posts)])
    ones = np.ones(n_posts, np.float32)
    edges = {
        (modality, SIMILAR, modality): symmetric(index, weight, n_posts),
        (USER, POSTED, modality): coalesce(forward, ones, n_users, n_posts),
        (modality, POSTED_BY, USER): coalesce(forward[::-1].copy(), ones, n_posts, n_users),
    }
    lap(f"knn_{modality}")
    return (pooled, present), result.describe(), edges


def _user_edges(
    dataset: Path,
    posts: _Posts,
    vectors: dict[str, tuple[np.ndarray, np.ndarray]],
    settings: GraphSettings,
    engine: Engine | None,
    report: StageFn,
) -> tuple[tuple[np.ndarray, np.ndarray], Influence, list[tuple[int, int, float]]]:
    """The user-user edges: Jaccard of the training hashtags, and each cold-start user's
    social-influence links to content-similar popular users; with the influence and links."""
    report("user-user Jaccard")
    train = posts.data.posts[posts.is_train]
    train_user = posts.post_user[posts.is_train]
    n_users = posts.n_users
    matrix, _ = user_hashtag_matrix(train_user, train["hashtags"].tolist(), n_users)
    neighbours, similarities = jaccard_topk(
        matrix, settings.user.k, settings.user.threshold, engine=engine
    )
    user_index, user_weight = knn_edges(neighbours, similarities, settings.user.threshold)
    report("influence and cold-start links")
    influence = measure_influence(
        train.reset_index(drop=True),
        train_user,
        _time_order(train),
        _followers(dataset, posts.user_ids),
        n_users,
        settings.influence,
        settings.popular_fraction,
        settings.popular_min_posts,
    )
    cold = np.flatnonzero(np.bincount(train_user, minlength=n_users) == 0)
    cold_profiles, popular_profiles = [], []
    for pooled, present in vectors.values():
        cold_profiles.append(
            user_profiles(pooled, present & ~posts.is_train, posts.post_user, n_users)
        )
        popular_profiles.append(
            user_profiles(pooled, present & posts.is_train, posts.post_user, n_users)
        )
    links = link_cold_users(
        cold, influence.popular, cold_profiles, popular_profiles, settings.cold_links
    )
    if links:
        link_index = np.array([[c, p] for c, p, _ in links], dtype=np.int64).T
        link_weight = np.array([max(s, 0.0) for _, _, s in links], dtype=np.float32)
        user_index = np.concatenate([user_index, link_index], axis=1)
        user_weight = np.concatenate([user_weight, link_weight])
    return symmetric(user_index, user_weight, n_users), influence, links


def _graph_meta(
    dataset: Path,
    posts: _Posts,
    settings: GraphSettings,
    skipped: dict[str, str],
    knn_methods: dict[str, dict[str, object]],
    influence: Influence,
    links: list[tuple[int, int, float]],
) -> dict[str, Any]:
    """graph.json's account of how the graph was built (beside its summary and timings)."""
    user_ids = posts.user_ids
    train_counts = np.bincount(posts.post_user[posts.is_train], minlength=posts.n_users)
    return {
        "split": posts.data.split_name,
        "dataset": str(dataset),
        "settings": settings.model_dump(mode="json"),
        "lineage": graph_lineage(posts.data, settings).model_dump(),
        "skipped_modalities": skipped,
        "knn_method": knn_methods,
        "influence": {
            "measure": influence.measure,
            "popular": [
                {
                    "user_id": user_ids[u],
                    "score": round(float(influence.scores[u]), 6),
                    "train_posts": int(train_counts[u]),
                }
                for u in influence.popular
            ],
        },
        "cold_start": {
            "cold_users": int((train_counts == 0).sum()),
            "links": len(links),
            "examples": [
                {"user_id": user_ids[c], "popular_user_id": user_ids[p], "similarity": round(s, 4)}
                for c, p, s in links[:20]
            ],
        },
        "counts": {
            "posts": posts.n_posts,
            "train_posts": int(posts.is_train.sum()),
            "users": posts.n_users,
        },
    }


CONTENT_FIELDS = ("video", "caption", "sound")


def _no_content_message(dataset: Path, posts: pd.DataFrame, skipped: dict[str, str]) -> str:
    """Why no modality can be built on, with the fix that applies: extraction not run yet, or
    posts with no content at all (then only the count baselines can rank)."""
    has_content = any(f in posts and bool(posts[f].notna().any()) for f in CONTENT_FIELDS)
    extracted = any(reason != "no feature store" for reason in skipped.values())
    if has_content and not extracted:
        return f"no modality has features in {dataset}: run `mishon extract {dataset}` first"
    if has_content:
        why = "; ".join(f"{m}: {r}" for m, r in skipped.items())
        return (
            f"no post of the split has features in {dataset} ({why}): rerun "
            f"`mishon extract {dataset} --overwrite` with an extractor for the content it has"
        )
    return (
        f"the posts of {dataset} have no video, caption or sound, so MISHON has no content "
        "modality to build its graph on; import a sound, caption or video column "
        f"(`mishon data import --map sound=COL,...`), or rank by users and time with "
        f"`mishon baselines {dataset} --only popularity,decayed,history`"
    )


def _followers(dataset: Path, user_ids: list[str]) -> np.ndarray | None:
    users = read_users(dataset)
    if users is None or "followers" not in users:
        return None
    values = users["followers"].to_numpy(dtype=np.float64, na_value=np.nan)
    known = dict(zip(users["user_id"].astype(str), values, strict=True))
    return np.array([known.get(u, np.nan) for u in user_ids], dtype=np.float64)


def _time_order(train: pd.DataFrame) -> np.ndarray:
    """Positions of the training posts, earliest first (by created_at, then table order)."""
    positions = np.arange(len(train))
    if "created_at" in train and train["created_at"].notna().all():
        return np.lexsort((positions, train["created_at"].to_numpy()))
    return positions
