"""Benchmark: ranking a new post with the one MISHON-live ranker at millions of known posts.

Part 1, in process with features given: a graph of `--graph-posts` posts (synthetic inputs of
benchmarks/train.py at its small unit shapes; an untrained network of the default size, since
latency does not depend on the weights) behind `LiveMishon`, whose known posts are the graph's
plus synthetic recorded posts up to `--known` (each a graph post's fused and content vectors
plus noise, with its hashtags; 10% also carry one of 50,000 hashtags outside the vocabulary, so
the inductive hashtag side has rows to score). Then `--queries` new posts, one at a time, 20%
of them from new users, through `rank_new` (featurized units given): the inductive path, the
evidence of the known posts (the index beyond `--exact-max`), weighting and reasons. Prints
p50 / p99 / max, the time to build the indexes, and the neighbour recall of the index against
the exact scan (the model's space and content, on `--recall-queries` of the queries).

Part 2 (`--end-to-end`): one 3 s H.264/AAC clip with a caption through the offline
extractors (decode, EfficientNet-Lite0, log-mel, MiniLM), timed by stage, with freed memory
kept for reuse as in a service process (`--allocator default`: glibc's own behaviour).

Part 1 runs with one torch / faiss / BLAS thread for the queries (a single query is too small to
split; with two threads a busy second core turns thread barriers into stalls); the indexes are
built with `--build-threads`.

Usage: python benchmarks/recommend.py [--known 2000000] [--graph-posts 200000]
           [--queries 300] [--exact-max 50000] [--nprobe 64] [--codes pq4|float16]
           [--refine 4] [--end-to-end]
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits

from evidence_index import exact_content, exact_fused
from memory import lifetime_peak_mb
from mishon.allocator import keep_freed_memory
from mishon.config import EvidenceIndexSettings, EvidenceSettings, RunSettings
from mishon.data.split_data import SplitData
from mishon.graph.build import HeteroGraph
from mishon.recommenders.evidence import Query
from mishon.recommenders.hashtag_side import HashtagEncoder
from mishon.recommenders.inductive import NewPost
from mishon.recommenders.live import LiveMishon
from mishon.train.run import TrainedRun, make_network
from train import SMALL_SHAPES, make_inputs

NEW_TAGS = 50_000  # hashtags outside the vocabulary among the recorded posts


CLUSTERS = 64  # topics: a post's units are its topic's centre plus noise, in every modality


def synthetic_run(posts: int, users: int, hashtags: int) -> tuple[TrainedRun, dict]:
    """A TrainedRun held in memory: units in CLUSTERS topics per modality, pooled as the graph
    pools them."""
    inputs = make_inputs(posts, users, hashtags, SMALL_SHAPES)
    rng = np.random.default_rng(1)
    topic = rng.integers(0, CLUSTERS, posts)
    centres = {}
    for modality, (units, dim) in SMALL_SHAPES.items():
        centres[modality] = rng.normal(size=(CLUSTERS, dim)).astype(np.float32)
        values = centres[modality][topic][:, None, :] + rng.normal(size=(posts, units, dim))
        inputs.modalities[modality].units.copy_(torch.from_numpy(values.astype(np.float16)))
    settings = RunSettings()
    torch.manual_seed(0)
    network = make_network(settings, inputs)
    network.eval()
    post_user = inputs.post_user.numpy()
    train = inputs.targets.has_target().numpy()
    tags = inputs.vocabulary.tags
    indptr = inputs.targets.indptr.tolist()
    frame = pd.DataFrame(
        {
            "post_id": [f"p{i}" for i in range(posts)],
            "user_id": [f"u{u}" for u in post_user],
            "hashtags": [
                [tags[j] for j in inputs.targets.indices[s:e].tolist()]
                for s, e in itertools.pairwise(indptr)
            ],
            "split": np.where(train, "train", "test"),
        }
    )
    data = SplitData(Path("."), "bench", frame, np.arange(posts), frame["post_id"].tolist())
    pooled = {}
    for modality in SMALL_SHAPES:
        means = inputs.modalities[modality].units.float().mean(dim=1).numpy()
        centre = means.mean(axis=0)
        vectors = means - centre
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        pooled[modality] = (vectors, np.ones(posts, dtype=bool), centre)
    popular = [{"user_id": f"u{u}"} for u in np.unique(post_user)[: max(1, users // 20)]]
    graph = HeteroGraph(
        num_nodes={},
        edges={},
        post_ids=frame["post_id"].tolist(),
        user_ids=[f"u{u}" for u in range(users)],
        post_user=post_user,
        post_split=frame["split"].to_numpy(),
        meta={"influence": {"popular": popular}, "knn_method": {}},
    )
    run = TrainedRun(Path("."), settings, data, inputs, network, {}, graph)  # type: ignore[arg-type]
    return run, pooled


def record_known(ranker: LiveMishon, total: int, users: int, seed: int = 4) -> float:
    """Synthetic recorded posts until `total` posts are known; returns the seconds it took."""
    clock = time.perf_counter()
    known = ranker.known_
    known.reserve(total)  # one copy of the vectors now, while they are few
    rng = np.random.default_rng(seed)
    graph_rows = np.flatnonzero(known.known[: len(known)])
    chunk = 500_000
    while (missing := total - int(known.known.sum())) > 0:
        count = min(chunk, missing)
        source = rng.choice(graph_rows, size=count)
        fused = known.fused[source] + 0.05 * rng.normal(size=(count, known.fused.shape[1]))
        content = []
        for vectors, present in known.content:
            values = vectors[source] + 0.1 * rng.normal(size=(count, vectors.shape[1]))
            values /= np.linalg.norm(values, axis=1, keepdims=True)
            content.append((values.astype(np.float32), present[source]))
        hashtags = [list(known.hashtags_of(r)) for r in source.tolist()]
        for i in np.flatnonzero(rng.random(count) < 0.1).tolist():
            hashtags[i].append(f"new{rng.integers(NEW_TAGS)}")
        people = [f"u{u}" for u in rng.integers(0, users, count)]
        rows = known.extend(fused.astype(np.float32), content, people, hashtags)
        if ranker.side_ is not None:
            for row, tags in zip(rows.tolist(), hashtags, strict=True):
                ranker.side_.reveal(row, tags)
    return time.perf_counter() - clock


def new_post(run: TrainedRun, rng: np.random.Generator, user: str | None) -> NewPost:
    """A post on the topic of a random graph post: its units plus as much noise again."""
    position = int(rng.integers(run.inputs.num_posts))
    units = {}
    for modality, (count, dim) in SMALL_SHAPES.items():
        own = run.inputs.modalities[modality].units[position].float().numpy()
        values = own + rng.normal(size=(count, dim)).astype(np.float32)
        units[modality] = (values.astype(np.float32), np.ones(count, dtype=bool))
    return NewPost(units, user)


def largest(values: np.ndarray, count: int) -> np.ndarray:
    """Positions of the `count` largest `values` (a partial sort: millions of values)."""
    count = min(count, len(values))
    return np.argpartition(-values, count - 1)[:count] if count else np.zeros(0, np.int64)


def neighbour_recall(ranker: LiveMishon, posts: list[NewPost], settings: EvidenceSettings) -> dict:
    """Recall of the index's nearest known posts against the exact scan, in the model's space
    (`neighbours`) and in content (`content_neighbours`)."""
    known = ranker.known_
    searchable = np.flatnonzero(known.known[: known.size] & known.placed[: known.size])
    model_recall, content_recall, model_ratio, content_ratio = [], [], [], []
    for post in posts:
        placed = ranker.inductive().place(post)
        query = placed.fused[0].numpy()
        query = query / np.linalg.norm(query)
        found = known.nearest_fused(query[None], settings.neighbours)[0][0]
        similarity = exact_fused(known, query, searchable)
        truth = searchable[largest(similarity, settings.neighbours)]
        model_recall.append(len(set(found.tolist()) & set(truth.tolist())) / len(truth))
        exact_best = float(similarity[largest(similarity, len(truth))].sum())
        model_ratio.append(float((known.fused[found] @ query).sum()) / exact_best)

        asked = Query(query, placed.content, None, {})
        found = known.nearest_content([asked], settings.content_neighbours)[0][0]
        mean = exact_content(known, asked, searchable)
        truth = searchable[largest(mean, settings.content_neighbours)]
        content_recall.append(len(set(found.tolist()) & set(truth.tolist())) / len(truth))
        got = mean[np.searchsorted(searchable, found)].sum()  # searchable is sorted
        content_ratio.append(float(got / mean[np.searchsorted(searchable, truth)].sum()))
    return {
        "model_space_recall": round(float(np.mean(model_recall)), 4),
        "content_recall": round(float(np.mean(content_recall)), 4),
        # the found neighbours' summed similarity over the exact ones': how much of the
        # evidence's weight a miss moves (near-ties make the sets differ at little cost)
        "model_space_similarity_ratio": round(float(np.mean(model_ratio)), 4),
        "content_similarity_ratio": round(float(np.mean(content_ratio)), 4),
        "recall_queries": len(posts),
    }


def in_process(args: argparse.Namespace) -> dict:
    settings = EvidenceSettings(
        index=EvidenceIndexSettings(
            exact_max=args.exact_max,
            nprobe=args.nprobe,
            kind=args.index,
            ef_search=args.ef_search,
            codes=args.codes,
            refine=args.refine,
        )
    )
    clock = time.perf_counter()
    run, pooled = synthetic_run(args.graph_posts, args.users, args.hashtags)
    ranker = LiveMishon(
        run.network,
        run.inputs,
        refresh_every=0,
        settings=settings,
        encoder=HashtagEncoder(run.network.settings.hidden),
        run=run,
        pooled=pooled,
    ).fit(run.data)
    loaded = time.perf_counter() - clock
    recorded_s = record_known(ranker, args.known, args.users)
    rng = np.random.default_rng(2)
    users = run.data.posts["user_id"].unique()
    posts = [
        new_post(run, rng, None if rng.random() < 0.2 else str(users[rng.integers(len(users))]))
        for _ in range(args.queries + 10)
    ]
    torch.set_num_threads(args.build_threads)
    faiss.omp_set_num_threads(args.build_threads)
    clock = time.perf_counter()
    ranker.rank_new(posts[0], k=10)  # builds the inductive path's cache and the indexes
    build_s = time.perf_counter() - clock
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    threadpool_limits(args.threads, user_api="blas")  # numpy's products too
    latencies = []
    for index, post in enumerate(posts[1:]):
        started = time.perf_counter()
        ranker.rank_new(post, k=10)
        if index >= 9:  # the first ten warm up
            latencies.append((time.perf_counter() - started) * 1000)
    if args.profile:  # where the time goes, to standard error
        profile = cProfile.Profile()
        profile.runcall(lambda: [ranker.rank_new(post, k=10) for post in posts[1:]])
        pstats.Stats(profile, stream=sys.stderr).sort_stats(args.profile).print_stats(40)
    recall = (
        neighbour_recall(ranker, posts[: args.recall_queries], settings)
        if ranker.known_.approximate
        else {"model_space_recall": 1.0, "content_recall": 1.0, "recall_queries": 0}
    )
    return {
        "known_posts": int(ranker.known_.known.sum()),
        "graph_posts": args.graph_posts,
        "hashtags_in_vocabulary": args.hashtags,
        "users": args.users,
        "threads": args.threads,
        "known_posts_search": "index" if ranker.known_.approximate else "exact",
        "index": settings.index.model_dump(),
        "graph_and_ranker_s": round(loaded, 1),
        "recording_s": round(recorded_s, 1),
        "first_ranking_s (builds the indexes)": round(build_s, 1),
        "queries": len(latencies),
        "p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "p99_ms": round(float(np.percentile(latencies, 99)), 2),
        "max_ms": round(float(np.max(latencies)), 2),
        **recall,
        # the kernel's high-water mark: a sampling thread cost a ranking 0.26 ms (paired)
        "peak_rss_mb": round(lifetime_peak_mb()),
    }


def end_to_end(repeats: int, allocator: str) -> dict:
    torch.set_num_threads(2)  # the extractors do share out a batch of frames
    if allocator == "keep":
        keep_freed_memory()  # as every service process does (mishon/allocator.py)
    from mishon.config import ExtractorSettings, ExtractSettings
    from mishon.features.base import Modality
    from mishon.features.registry import create_extractor
    from mishon.media.encode import write_clip
    from mishon.recommend.featurize import PostFeaturizer

    specs = {"visual": ("efficientnet-lite0", 8), "acoustic": ("logmel", 8)}
    specs["textual"] = ("minilm", 32)
    featurizer = PostFeaturizer(  # the offline extractors, without a dataset
        {
            m: create_extractor(Modality(m), ExtractorSettings(name=n, units=u), ExtractSettings())
            for m, (n, u) in specs.items()
        }
    )
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 255, size=(75, 240, 320, 3), dtype=np.uint8)
    audio = (0.1 * np.sin(np.linspace(0, 3 * 440 * 2 * np.pi, 48000))).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "clip.mp4"
        write_clip(clip, frames, 25, audio)
        stages: dict[str, list[float]] = {}
        for repeat in range(repeats + 1):
            clock = time.perf_counter()
            _, timings, _ = featurizer.featurize(clip, "sunset at the beach with friends #fun")
            timings["featurize_total_s"] = time.perf_counter() - clock
            if repeat:  # the first loads weights and warms up
                for name, value in timings.items():
                    stages.setdefault(name, []).append(value * 1000)
    return {f"{k[:-2]}_ms (median)": round(float(np.median(v)), 1) for k, v in stages.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--known", type=int, default=2_000_000, help="known posts in all")
    parser.add_argument("--graph-posts", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=6786)
    parser.add_argument("--hashtags", type=int, default=15_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--recall-queries", type=int, default=50)
    parser.add_argument("--index", choices=["ivf", "hnsw"], default="ivf")
    parser.add_argument(
        "--profile",
        choices=["cumulative", "tottime"],
        help="cProfile the rankings too, sorted so (to standard error)",
    )
    parser.add_argument("--ef-search", type=int, default=128)
    parser.add_argument(
        "--codes", choices=["pq4", "float16"], default=EvidenceIndexSettings().codes
    )
    parser.add_argument("--refine", type=int, default=EvidenceIndexSettings().refine)
    parser.add_argument("--exact-max", type=int, default=50_000)
    parser.add_argument("--nprobe", type=int, default=EvidenceIndexSettings().nprobe)
    parser.add_argument("--threads", type=int, default=1, help="torch / faiss threads, queries")
    parser.add_argument("--build-threads", type=int, default=2, help="... building the indexes")
    parser.add_argument("--end-to-end", action="store_true", help="also time a real clip")
    parser.add_argument("--repeats", type=int, default=5, help="end-to-end clips")
    parser.add_argument(
        "--allocator",
        choices=["keep", "default"],
        default="keep",
        help="end-to-end: freed memory kept for reuse, as a service process does, or glibc's "
        "default (large blocks back to the kernel)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.build_threads)
    # the clip first, while the heap is fresh: part 1's large arrays, once freed, would serve
    # the extractors' tensors whichever `--allocator`
    clip = end_to_end(args.repeats, args.allocator) if args.end_to_end else None
    print(json.dumps({"in_process": in_process(args)}, indent=2), flush=True)
    if clip is not None:
        print(json.dumps({"end_to_end_3s_clip": clip}, indent=2))


if __name__ == "__main__":
    main()
