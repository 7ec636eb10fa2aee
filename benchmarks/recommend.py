"""Benchmark: recommendation latency for new posts at a 200,000-post graph, 15,000 hashtags.

Part 1, in process with features given: a graph of 200,000 posts (6,786 users; the synthetic
inputs of benchmarks/train.py; an untrained network of the default size, since latency does
not depend on the weights), loaded once into an InductiveRecommender; then `--queries` new
posts, one at a time, 20% of them from new users: p50 / p99 of `recommend()` (encoders, IVF
neighbour search per modality, the new nodes' GraphSAGE steps, fusion, softmax, top-k and
reasons), then, apart, p50 / p99 of the live evidence the service adds (`gather_evidence`
against every post of the graph as a known post: MISHON live's ranking).

Part 2, end to end: one 3 s H.264/AAC clip with a caption through the offline extractors
(decode, EfficientNet-Lite0, log-mel, MiniLM), timed by stage, plus part 1's median.

Part 1 runs with one torch / faiss thread by default: a single query is too small to split,
and with two threads a busy second core turns thread barriers into 100 ms stalls (measured).

Usage: python benchmarks/recommend.py [--posts 200000] [--hashtags 15000] [--queries 300]
                                      [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from memory import PeakRss
from mishon.config import RunSettings
from mishon.data.split_data import SplitData
from mishon.graph.build import HeteroGraph
from mishon.recommend.inductive import InductiveRecommender, NewPost
from mishon.recommenders.evidence import EvidenceSettings, KnownPosts, Query, gather_evidence
from mishon.train.run import TrainedRun, make_network
from train import SHAPES, make_inputs


def synthetic_run(posts: int, users: int, hashtags: int) -> tuple[TrainedRun, dict]:
    """A TrainedRun held in memory, with pooled vectors in 64 clusters per modality."""
    inputs = make_inputs(posts, users, hashtags)
    rng = np.random.default_rng(1)
    settings = RunSettings()
    torch.manual_seed(0)
    network = make_network(settings, inputs)
    network.eval()
    post_user = inputs.post_user.numpy()
    train = inputs.targets.has_target().numpy()
    tags = inputs.vocabulary.tags
    frame = pd.DataFrame(
        {
            "post_id": [f"p{i}" for i in range(posts)],
            "user_id": [f"u{u}" for u in post_user],
            "hashtags": [
                [tags[j] for j in inputs.targets.indices[s:e].tolist()]
                for s, e in zip(
                    inputs.targets.indptr[:-1].tolist(),
                    inputs.targets.indptr[1:].tolist(),
                    strict=True,
                )
            ],
            "split": np.where(train, "train", "test"),
        }
    )
    data = SplitData(Path("."), "bench", frame, np.arange(posts), frame["post_id"].tolist())
    pooled = {}
    for modality, (_, dim) in SHAPES.items():
        centres = rng.normal(size=(64, dim)).astype(np.float32)
        vectors = centres[rng.integers(0, 64, posts)] + rng.normal(size=(posts, dim)).astype(
            np.float32
        )
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        pooled[modality] = (vectors, np.ones(posts, dtype=bool), np.zeros(dim, np.float32))
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
    run = TrainedRun(Path("."), settings, data, inputs, network, {}, graph)
    return run, pooled


def new_post(rng: np.random.Generator, user: str | None) -> NewPost:
    units = {
        m: (rng.normal(size=(u, d)).astype(np.float32), np.ones(u, dtype=bool))
        for m, (u, d) in SHAPES.items()
    }
    return NewPost(units, user)


def in_process(args: argparse.Namespace) -> dict:
    peak = PeakRss()
    settings = EvidenceSettings()
    clock = time.perf_counter()
    run, pooled = synthetic_run(args.posts, args.users, args.hashtags)
    built = time.perf_counter() - clock
    clock = time.perf_counter()
    recommender = InductiveRecommender(run, pooled)
    loaded = time.perf_counter() - clock
    clock = time.perf_counter()
    known = KnownPosts(
        recommender.graph_fused(),
        [recommender.pooled[m] for m in recommender.network.modalities],
    )
    posts = run.data.posts
    for row, (user, tags) in enumerate(zip(posts["user_id"], posts["hashtags"], strict=True)):
        known.reveal(row, str(user), list(tags))
    known_s = time.perf_counter() - clock
    rng = np.random.default_rng(2)
    users = run.data.posts["user_id"].unique()
    latencies, evidence_latencies = [], []
    for query in range(args.queries + 10):
        user = None if rng.random() < 0.2 else str(users[rng.integers(len(users))])
        post = new_post(rng, user)
        started = time.perf_counter()
        result = recommender.recommend(post, k=60)
        between = time.perf_counter()
        model = dict(result.hashtags)
        gather_evidence(known, [Query(result.fused, result.content, user, model)], settings)
        if query >= 10:  # the first ten warm up
            latencies.append((between - started) * 1000)
            evidence_latencies.append((time.perf_counter() - between) * 1000)
    return {
        "posts": args.posts,
        "hashtags": args.hashtags,
        "users": args.users,
        "threads": torch.get_num_threads(),
        "neighbour_search": {m: i.method for m, i in recommender.indexes.items()},
        "build_inputs_s": round(built, 1),
        "load_s (states of every layer, indexes)": round(loaded, 1),
        "queries": len(latencies),
        "p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "p99_ms": round(float(np.percentile(latencies, 99)), 2),
        "max_ms": round(float(np.max(latencies)), 2),
        "known_posts_load_s": round(known_s, 1),
        "live_evidence_p50_ms": round(float(np.percentile(evidence_latencies, 50)), 2),
        "live_evidence_p99_ms": round(float(np.percentile(evidence_latencies, 99)), 2),
        "peak_rss_mb": round(peak.take()),
    }


def end_to_end(repeats: int) -> dict:
    torch.set_num_threads(2)  # the extractors do share out a batch of frames
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
    parser.add_argument("--posts", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=6786)
    parser.add_argument("--hashtags", type=int, default=15_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5, help="end-to-end clips")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch and faiss threads for part 1 (one query is too small to share out)",
    )
    args = parser.parse_args()
    import faiss

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    part1 = in_process(args)
    print(json.dumps({"in_process": part1}, indent=2), flush=True)
    part2 = end_to_end(args.repeats)
    part2["end_to_end_ms (featurize + p50 recommend)"] = round(
        part2["featurize_total_ms (median)"] + part1["p50_ms"], 1
    )
    print(json.dumps({"end_to_end_3s_clip": part2}, indent=2))


if __name__ == "__main__":
    main()
