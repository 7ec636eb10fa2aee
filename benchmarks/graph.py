"""Benchmark: building the graph at 10,000, 50,000 and 213,847 posts (INSVIDEO's size, 6,786
users, 15,751 hashtags), on synthetic float16 feature stores with cluster structure at the
default extractor shapes (visual 8 x 1280, acoustic 8 x 128, textual 32 x 384).

For each size: wall time and peak RSS of every stage; kNN recall against exact search on a
sample of queries wherever the approximate index ran; and, side by side, the dense pattern of
peer code (normalise, full N x N similarity matmul, topk, as in FREEDOM/LATTICE) on the visual
modality, in its own process, at every size where its N x N float32 matrix fits in memory.

Usage: python benchmarks/graph.py [--sizes 10000 50000 213847] [--work DIR] [--dense-max 50000]
                                 [--engine local|ray] [--shapes paper|small] [--users 6786]
With `--engine ray` the kNN and Jaccard shards run as tasks of a local Ray cluster (the peak
RSS is then the driver's; `ray_worker_peak_rss_mb` the largest of any one Ray worker's).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from memory import PeakRss, PeakWorkerRss
from mishon.config import GraphSettings, SplitSettings
from mishon.data.schema import POSTS_SCHEMA, USERS_SCHEMA
from mishon.data.splits import make_split
from mishon.data.store import write_split, write_table
from mishon.features.store import DONE, FeatureStore, StoreSpec, modality_dir

PAPER_SHAPES = {"visual": (8, 1280), "acoustic": (8, 128), "textual": (32, 384)}
# small enough that 2,000,000 posts' stores take 2.6 GB of disk (the kNN work shrinks with them)
SMALL_SHAPES = {"visual": (4, 64), "acoustic": (4, 32), "textual": (4, 64)}
SHAPES = {"paper": PAPER_SHAPES, "small": SMALL_SHAPES}
USERS = 6786
HASHTAGS = 15751


def make_dataset(
    root: Path, n: int, seed: int = 0, shapes: str = "paper", users_count: int = USERS
) -> None:
    """Posts, a temporal split and clustered feature stores for `n` posts."""
    rng = np.random.default_rng(seed)
    topics = 200
    topic = rng.integers(0, topics, n)
    users = rng.integers(0, min(users_count, n), n)
    tags_per_topic = HASHTAGS // topics
    tags = [
        [
            f"t{(t * tags_per_topic + j) % HASHTAGS}"
            for j in rng.choice(tags_per_topic, size=rng.integers(1, 4), replace=False)
        ]
        for t in topic
    ]
    posts = pd.DataFrame(
        {
            "post_id": [f"p{i:07d}" for i in range(n)],
            "user_id": [f"u{u:05d}" for u in users],
            "hashtags": tags,
            "created_at": pd.Timestamp("2026-01-01", tz="UTC")
            + pd.to_timedelta(np.sort(rng.uniform(0, 180, n)), unit="D"),
            "likes": rng.integers(0, 500, n),
        }
    )
    root.mkdir(parents=True)
    write_table(posts, root / "posts.parquet", POSTS_SCHEMA)
    users_table = pd.DataFrame({"user_id": sorted(posts["user_id"].unique())})
    users_table["followers"] = rng.integers(10, 100_000, len(users_table))
    write_table(
        users_table,
        root / "users.parquet",
        USERS_SCHEMA,
    )
    assignment, meta = make_split(posts, SplitSettings(strategy="temporal"))
    write_split(root, "temporal", assignment, meta)
    ids = posts["post_id"].tolist()
    for modality, (units, dim) in SHAPES[shapes].items():
        centres = rng.standard_normal((topics, dim)).astype(np.float32)
        store = FeatureStore.create_or_resume(
            modality_dir(root, modality),
            StoreSpec(modality, "synthetic", "clusters", units, dim),
            ids,
        )
        for start in range(0, n, 2048):
            stop = min(start + 2048, n)
            base = centres[topic[start:stop]][:, None, :] + 0.8 * rng.standard_normal(
                (stop - start, 1, dim), dtype=np.float32
            )
            values = base + 0.5 * rng.standard_normal((stop - start, units, dim), dtype=np.float32)
            store.values[start:stop] = values.astype(np.float16)
            store.mask[start:stop] = True
        store.values.flush()
        store.mask.flush()
        store.status[:] = DONE
        store.status.flush()
        store.finish()
        del store


def run_graph(root: Path, exact_recall_queries: int, engine_name: str = "local") -> dict:
    """Build the graph stage by stage, measuring time and peak RSS of each."""
    from mishon.graph.build import build_graph
    from mishon.graph.engine import RayEngine
    from mishon.graph.knn import knn, recall_at_k
    from mishon.graph.pooled import pooled_vectors

    monitor = PeakRss()
    workers = PeakWorkerRss("ray::")
    stages: dict[str, float] = {}
    peaks: dict[str, float] = {}
    current = {"name": "start", "t": time.perf_counter()}

    def stage(name: str) -> None:
        now = time.perf_counter()
        stages[current["name"]] = round(now - current["t"], 1)
        peaks[current["name"]] = round(monitor.take())
        current.update(name=name, t=now)

    settings = GraphSettings()
    started = time.perf_counter()
    engine = RayEngine() if engine_name == "ray" else None
    try:
        graph = build_graph(root, "temporal", settings, stage=stage, engine=engine)
    finally:
        if engine is not None:
            engine.close()
    stage("done")
    total = time.perf_counter() - started
    stages.pop("start", None)
    peaks.pop("start", None)
    result = {
        "engine": engine_name,
        "posts": len(graph.post_ids),
        "users": graph.num_nodes["user"],
        "total_s": round(total, 1),
        "peak_rss_mb": round(max(peaks.values())),
        "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "peak_private_mb": round(monitor.private_peak),  # less shared pages (Ray's object store)
        "ray_worker_peak_rss_mb": round(workers.stop()) if engine_name == "ray" else None,
        "stages_s": stages,
        "stage_peak_rss_mb": peaks,
        "knn_method": graph.meta["knn_method"],
        "edges": {k: v["edges"] for k, v in graph.meta["summary"]["edges"].items()},
    }
    # Recall of the approximate index against exact search, on a sample of queries.
    recalls = {}
    for modality, method in graph.meta["knn_method"].items():
        if method["method"] == "exact":
            continue
        from mishon.features.store import FeatureStore as Store

        store = Store.open(modality_dir(root, modality))
        vectors, present = pooled_vectors(store, np.arange(len(graph.post_ids)))
        rng = np.random.default_rng(1)
        queries = np.sort(rng.choice(len(vectors), size=exact_recall_queries, replace=False))
        k = getattr(settings, modality).k
        approx = knn(
            vectors,
            present,
            k,
            exact_max=settings.exact_max,
            method=settings.index,
            nprobe=int(method["nprobe"]),
            seed=settings.seed,
        )
        import faiss

        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors)
        _, found = index.search(vectors[queries], k + 1)
        exact = np.array(
            [[f for f in row if f != q][:k] for row, q in zip(found, queries, strict=True)]
        )
        recalls[modality] = round(recall_at_k(approx.neighbours[queries], exact), 4)
    result["recall"] = recalls
    monitor.running = False
    return result


def run_dense(root: Path, n: int) -> dict:
    """The dense pattern on the visual modality: normalise, X @ X.T, topk (peer code)."""
    import torch

    from mishon.graph.pooled import pooled_vectors

    store = FeatureStore.open(modality_dir(root, "visual"))
    vectors, _ = pooled_vectors(store, np.arange(n))
    started = time.perf_counter()
    x = torch.from_numpy(vectors)
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    sim = x @ x.T
    sim.fill_diagonal_(-float("inf"))
    sim.topk(10, dim=1)
    seconds = time.perf_counter() - started
    return {
        "dense_visual_s": round(seconds, 1),
        "dense_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def knn_only(root: Path, n: int) -> dict:
    """Our visual kNN alone (pooling + faiss), for the side-by-side with the dense pattern."""
    from mishon.graph.knn import knn
    from mishon.graph.pooled import pooled_vectors

    store = FeatureStore.open(modality_dir(root, "visual"))
    vectors, present = pooled_vectors(store, np.arange(n))
    settings = GraphSettings()
    started = time.perf_counter()
    knn(
        vectors,
        present,
        10,
        exact_max=settings.exact_max,
        method=settings.index,
        nprobe=settings.ivf_nprobe,
    )
    return {
        "ours_visual_s": round(time.perf_counter() - started, 1),
        "ours_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def in_subprocess(function: str, root: Path, n: int, *extra: str) -> dict:
    """Run one measurement in a fresh process, so its peak RSS is its own."""
    here = str(Path(__file__).parent)
    more = "".join(f", {value!r}" for value in extra)
    code = (
        f"import json, sys; sys.path.insert(0, {here!r}); import graph as bench; "
        f"from pathlib import Path; "
        f"print(json.dumps(bench.{function}(Path({str(root)!r}), {n}{more})))"
    )
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def recall_on(dataset: Path, queries: int) -> None:
    """kNN recall of the approximate index against exact search on a real dataset's stores."""
    import faiss

    from mishon.graph.knn import knn, recall_at_k
    from mishon.graph.pooled import pooled_vectors

    settings = GraphSettings()
    for modality in ("visual", "acoustic", "textual"):
        folder = modality_dir(dataset, modality)
        if not (folder / "manifest.json").is_file():
            continue
        store = FeatureStore.open(folder)
        vectors, present = pooled_vectors(store, np.arange(len(store.post_ids)))
        k = getattr(settings, modality).k
        for nprobe in (8, 16, 32, 64):
            started = time.perf_counter()
            approx = knn(vectors, present, k, exact_max=1, nprobe=nprobe, seed=settings.seed)
            # (fixed nprobe here: the graph's own adaptive search stops at target_recall)
            seconds = time.perf_counter() - started
            rows = np.flatnonzero(present)
            sample = np.sort(
                np.random.default_rng(1).choice(rows, size=min(queries, len(rows)), replace=False)
            )
            index = faiss.IndexFlatIP(vectors.shape[1])
            index.add(np.ascontiguousarray(vectors[rows]))
            _, found = index.search(vectors[sample], k + 1)
            exact = np.array(
                [
                    [rows[f] for f in row if rows[f] != q][:k]
                    for row, q in zip(found, sample, strict=True)
                ]
            )
            recall = recall_at_k(approx.neighbours[sample], exact)
            print(
                f"{dataset} {modality}: N={len(rows)} nprobe={nprobe} "
                f"ivf_s={seconds:.1f} recall@{k}={recall:.4f}",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--real", type=Path, default=None, help="only measure kNN recall on this dataset"
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 213_847])
    parser.add_argument(
        "--work", type=Path, default=None, help="scratch folder (about 10 GB at 213,847)"
    )
    parser.add_argument(
        "--dense-max", type=int, default=50_000, help="largest N for the dense pattern"
    )
    parser.add_argument("--recall-queries", type=int, default=2000)
    parser.add_argument("--engine", choices=("local", "ray"), default="local")
    parser.add_argument(
        "--shapes", choices=sorted(SHAPES), default="paper", help="unit shapes of the stores"
    )
    parser.add_argument("--users", type=int, default=USERS)
    args = parser.parse_args()
    if args.real is not None:
        recall_on(args.real, args.recall_queries)
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="mishon-graph-bench-"))
    for n in args.sizes:
        root = work / f"n{n}"
        if root.exists():
            shutil.rmtree(root)
        started = time.perf_counter()
        make_dataset(root, n, shapes=args.shapes, users_count=args.users)
        print(
            f"[{n}] synthetic dataset written in {time.perf_counter() - started:.0f} s", flush=True
        )
        result = in_subprocess("run_graph_json", root, n, args.engine)
        print(f"[{n}] graph: {json.dumps(result)}", flush=True)
        dense_bytes = 4 * n * n
        if n <= args.dense_max and dense_bytes < 0.6 * os.sysconf("SC_PHYS_PAGES") * os.sysconf(
            "SC_PAGE_SIZE"
        ):
            ours = in_subprocess("knn_only", root, n)
            dense = in_subprocess("run_dense", root, n)
            ratio_t = dense["dense_visual_s"] / max(ours["ours_visual_s"], 0.1)
            ratio_m = dense["dense_peak_rss_mb"] / max(ours["ours_peak_rss_mb"], 1)
            print(
                f"[{n}] visual kNN ours {ours} vs dense {dense}: "
                f"dense/ours time x{ratio_t:.1f}, memory x{ratio_m:.1f}",
                flush=True,
            )
        else:
            print(
                f"[{n}] dense pattern skipped: its {n} x {n} float32 matrix "
                f"needs {dense_bytes / 2**30:.0f} GiB",
                flush=True,
            )
        shutil.rmtree(root)
    if args.work is None:
        shutil.rmtree(work)


def make_dataset_json(root: Path, n: int) -> dict:
    make_dataset(root, n)
    return {}


def run_graph_json(root: Path, n: int, engine: str = "local") -> dict:
    return run_graph(root, min(2000, n), engine)


if __name__ == "__main__":
    main()
