"""Benchmark: the evidence index against the exact scan on a real run's known posts.

Loads RUN, makes every labelled post of its dataset known (as the service does), and for
`--queries` posts of `--part` (valid by default: settings are chosen on validation posts;
their fused vectors and pooled content, each query's own row left out)
compares the nearest known posts the index finds (`--kind`, `--nprobe`, `--ef-search`, `--codes`,
`--refine`) with the
exact scan: recall of the `neighbours` nearest in the model's space and the
`content_neighbours` nearest in content, the share of the exact neighbours' summed similarity
the found ones keep, and the time per search.

Usage: python benchmarks/evidence_index.py RUN [--queries 500] [--part valid|test]
       [--kind ivf|hnsw] [--nprobe 64] [--ef-search 128] [--codes pq4|float16] [--refine 4]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from mishon.config import EvidenceIndexSettings, EvidenceSettings
from mishon.recommenders.evidence import EVIDENCE, KnownPosts, Query
from mishon.recommenders.live import LiveMishon
from mishon.train.run import load_run

SCAN_CHUNK = 1_000_000  # rows gathered at a time by the exact scans (millions of known posts)


def exact_fused(known: KnownPosts, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Cosine in the model's space with unit `query`, per row of `rows`."""
    return np.concatenate(
        [known.fused[rows[s : s + SCAN_CHUNK]] @ query for s in range(0, len(rows), SCAN_CHUNK)]
    )


def exact_content(known: KnownPosts, query: Query, rows: np.ndarray) -> np.ndarray:
    """Mean cosine over the modalities both have, per row of `rows` (-inf: none shared)."""
    total = np.zeros(len(rows), np.float32)
    shared = np.zeros(len(rows), np.float32)
    for (vectors, present), (vector, has) in zip(known.content, query.content, strict=True):
        if has:
            for start in range(0, len(rows), SCAN_CHUNK):
                part = rows[start : start + SCAN_CHUNK]
                both = present[part].astype(np.float32)
                total[start : start + len(part)] += (vectors[part] @ vector) * both
                shared[start : start + len(part)] += both
    return np.where(shared > 0, total / np.maximum(shared, 1), -np.inf)


def overlap(found: np.ndarray, truth: np.ndarray) -> float:
    return len(set(found.tolist()) & set(truth.tolist())) / max(len(truth), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--part", choices=["valid", "test"], default="valid")
    parser.add_argument("--kind", choices=["ivf", "hnsw"], default="ivf")
    parser.add_argument("--nprobe", type=int, default=EvidenceIndexSettings().nprobe)
    parser.add_argument("--ef-search", type=int, default=128)
    parser.add_argument(
        "--codes", choices=["pq4", "float16"], default=EvidenceIndexSettings().codes
    )
    parser.add_argument("--refine", type=int, default=EvidenceIndexSettings().refine)
    args = parser.parse_args()
    index = EvidenceIndexSettings(
        exact_max=0, kind=args.kind, nprobe=args.nprobe, ef_search=args.ef_search,
        codes=args.codes, refine=args.refine,
    )  # fmt: skip
    settings = EvidenceSettings(index=index)
    loaded = load_run(args.run, device="cpu")
    evidence = tuple(e for e in EVIDENCE if e != "model_outside")  # nothing to fit for this
    ranker = LiveMishon.from_run(loaded, evidence=evidence, refresh_every=0, settings=settings)
    ranker.fit(loaded.data)
    ranker.know_dataset()
    known = ranker.known_
    rng = np.random.default_rng(0)
    part = np.flatnonzero(np.asarray(loaded.data.posts["split"] == args.part))
    part = part[known.known[part] & known.placed[part]]
    chosen = rng.choice(part, size=min(args.queries, len(part)), replace=False)
    searchable = np.flatnonzero(known.known[: known.size] & known.placed[: known.size])
    clock = time.perf_counter()
    known.nearest_fused(known.fused[chosen[:1]], 1)  # builds the indexes
    build_s = time.perf_counter() - clock
    recall, kept, content_recall, content_kept, seconds = [], [], [], [], []
    for row in chosen.tolist():
        others = searchable[searchable != row]
        query_vector = known.fused[row]
        clock = time.perf_counter()
        found, _ = known.nearest_fused(query_vector[None], settings.neighbours + 1)[0]
        query = Query(query_vector, [(v[row], bool(p[row])) for v, p in known.content], None, {})
        found_content, _ = known.nearest_content([query], settings.content_neighbours + 1)[0]
        seconds.append(time.perf_counter() - clock)
        found = found[found != row][: settings.neighbours]
        similarity = exact_fused(known, query_vector, others)
        order = np.argsort(-similarity)[: settings.neighbours]
        recall.append(overlap(found, others[order]))
        kept.append(float((known.fused[found] @ query_vector).sum() / similarity[order].sum()))
        found_content = found_content[found_content != row][: settings.content_neighbours]
        mean = exact_content(known, query, others)
        order = np.argsort(-mean)[: settings.content_neighbours]
        content_recall.append(overlap(found_content, others[order]))
        got = exact_content(known, query, found_content).sum()
        content_kept.append(float(got / mean[order].sum()))
    print(
        json.dumps(
            {
                "run": str(args.run),
                "known_posts": len(searchable),
                "queries": len(chosen),
                "part": args.part,
                "index": index.model_dump(),
                "build_s": round(build_s, 2),
                "search_ms_p50": round(float(np.median(seconds)) * 1000, 3),
                "model_space_recall": round(float(np.mean(recall)), 4),
                "model_space_similarity_kept": round(float(np.mean(kept)), 4),
                "content_recall": round(float(np.mean(content_recall)), 4),
                "content_similarity_kept": round(float(np.mean(content_kept)), 4),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
