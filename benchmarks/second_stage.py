"""Benchmark: a learned second stage (LightGBM LambdaRank) against MISHON live's weight search.

MISHON live ranks a post's candidate hashtags by a weighted sum of its evidence, the weights
found by coordinate ascent over a grid on the validation posts (`evaluate/live.py`). This
script asks whether a ranker learned from the same evidence does better. It ranks RUN's
validation posts as `mishon evaluate` ranks them for the weight selection under `--protocol`
(known-past: each half knowing the other; stream and static: as test posts), then, in
`--folds` folds grouped by user (no user on both sides), fits on the other folds and scores
F1@5 on the held-out one:

- search: `select_weights` apart for posts of users with and without known posts (as the
  evaluation selects them);
- lambdarank: `lightgbm.LGBMRanker` (objective lambdarank, NDCG@5) over the evidence values and
  whether the user has known posts, labels = the candidate is a true hashtag.

Only validation posts are read: the test posts stay untouched. Prints JSON with F1@5 per fold
and their mean for both.

Usage: python benchmarks/second_stage.py RUN [--protocol known-past|stream|static]
       [--folds 2] [--trees 300] [--leaves 15] [--refresh 256]
(needs `pip install lightgbm`; the dev extra installs it)
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from pathlib import Path

import numpy as np

from mishon.evaluate.live import MIN_GROUP_POSTS, validation_tables
from mishon.metrics import f1_from_hits
from mishon.recommenders.evidence import EvidenceTable
from mishon.recommenders.live import LiveMishon, select_weights
from mishon.train.run import load_run

K = 5


def f1_of(scores: list[np.ndarray], tables: list[EvidenceTable], truth: list[set[str]]) -> float:
    found = np.array(
        [
            sum(table.hashtags[i] in true for i in np.argsort(-score, kind="stable")[:K])
            for score, table, true in zip(scores, tables, truth, strict=True)
        ],
        dtype=np.float64,
    )
    return f1_from_hits(found, np.array([len(t) for t in truth], dtype=np.float64), K)


def searched(
    tables: list[EvidenceTable], has: list[bool], truth: list[set[str]], use: tuple[str, ...]
) -> dict[bool, np.ndarray]:
    """Weights per group (users with / without known posts), as the evaluation selects them."""
    chosen = {}
    for group in (True, False):
        rows = [i for i, h in enumerate(has) if h == group]
        if len(rows) >= MIN_GROUP_POSTS:
            weights, _ = select_weights(
                [tables[i] for i in rows], [truth[i] for i in rows], use=use
            )
            chosen[group] = np.array(list(weights.values()))
    if not chosen:
        weights, _ = select_weights(tables, truth, use=use)
        chosen = {True: np.array(list(weights.values()))}
    return {g: chosen.get(g, next(iter(chosen.values()))) for g in (True, False)}


def features(table: EvidenceTable, has: bool) -> np.ndarray:
    return np.hstack([table.values, np.full((len(table.hashtags), 1), float(has))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--protocol", default="known-past")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--leaves", type=int, default=15)
    parser.add_argument(
        "--refresh", type=int, default=256, help="stream: re-encode after this many posts"
    )
    args = parser.parse_args()
    import lightgbm

    started = time.perf_counter()
    loaded = load_run(args.run)
    live = LiveMishon.from_run(loaded, refresh_every=args.refresh)
    recorded = validation_tables(live, loaded.data, args.protocol, K)
    tables, has = [t for t, _ in recorded], [h for _, h in recorded]
    cases = loaded.data.cases("valid")
    truth = [set(t) for t in loaded.data.posts["hashtags"].to_numpy()[cases]]
    users = loaded.data.posts["user_id"].astype(str).to_numpy()[cases]
    fold = np.array([zlib.crc32(u.encode()) % args.folds for u in users])
    result: dict[str, list[float]] = {"search": [], "lambdarank": []}
    for held in range(args.folds):
        fit = [i for i in range(len(cases)) if fold[i] != held]
        test = [i for i in range(len(cases)) if fold[i] == held]
        weights = searched(
            [tables[i] for i in fit], [has[i] for i in fit], [truth[i] for i in fit], live.use
        )
        test_tables, test_truth = [tables[i] for i in test], [truth[i] for i in test]
        scores = [tables[i].values @ weights[has[i]] for i in test]
        result["search"].append(f1_of(scores, test_tables, test_truth))
        ranker = lightgbm.LGBMRanker(
            objective="lambdarank",
            n_estimators=args.trees,
            num_leaves=args.leaves,
            learning_rate=0.05,
            min_child_samples=20,
            eval_at=[K],
            verbose=-1,
            random_state=0,
        )
        x = np.vstack([features(tables[i], has[i]) for i in fit])
        y = np.concatenate([[int(t in truth[i]) for t in tables[i].hashtags] for i in fit]).astype(
            np.int32
        )
        ranker.fit(x, y, group=[len(tables[i].hashtags) for i in fit])
        scores = [ranker.predict(features(tables[i], has[i])) for i in test]
        result["lambdarank"].append(f1_of(scores, test_tables, test_truth))
    print(
        json.dumps(
            {
                "run": str(args.run),
                "protocol": args.protocol,
                "validation_cases": len(cases),
                "folds": args.folds,
                "f1_at_5": {
                    name: {
                        "folds": [round(v, 4) for v in values],
                        "mean": round(float(np.mean(values)), 4),
                    }
                    for name, values in result.items()
                },
                "seconds": round(time.perf_counter() - started, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
