"""Benchmark: MISHON live's learned second stage (LightGBM LambdaRank) against its weight search.

MISHON live ranks a post's candidate hashtags either by a weighted sum of its evidence (the
weights found by coordinate ascent on the validation posts) or by a LambdaRank model learned
from the same evidence (`recommenders/second_stage.py`); `mishon evaluate` chooses between them
on the validation posts (`evaluate/live.py`, `choose_second_stage`). This script shows that
choice for RUN under `--protocol`: the validation posts ranked as the evaluation ranks them
(known-past: each half knowing the other; stream and static: as test posts), split in folds by
user, each ranker fitted on the other folds and scored (F1@5) on the held-out one.

Only validation posts are read: the test posts stay untouched. Prints JSON with F1@5 per fold,
their mean for both, and which one `mishon evaluate` keeps (auto: the learned ranker only where
it is better on every fold).

Usage: python benchmarks/second_stage.py RUN [--protocol known-past|stream|static]
       [--folds 2] [--trees 300] [--leaves 15] [--refresh 256]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from mishon.config import SecondStageSettings
from mishon.evaluate.live import choose_second_stage, validation_tables
from mishon.recommenders.live import LiveMishon
from mishon.train.run import load_run

K = 5


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
    started = time.perf_counter()
    loaded = load_run(args.run)
    live = LiveMishon.from_run(loaded, refresh_every=args.refresh)
    recorded = validation_tables(live, loaded.data, args.protocol, K)
    cases = loaded.data.cases("valid")
    truth = [set(t) for t in loaded.data.posts["hashtags"].to_numpy()[cases]]
    users = loaded.data.posts["user_id"].astype(str).to_numpy()[cases]
    settings = SecondStageSettings(folds=args.folds, trees=args.trees, leaves=args.leaves)
    _, record = choose_second_stage(
        [t for t, _ in recorded], [h for _, h in recorded], truth, users, live.use, settings, K
    )
    folds = record.get("folds_f1_at_5", {})
    print(
        json.dumps(
            {
                "run": str(args.run),
                "protocol": args.protocol,
                "validation_cases": len(cases),
                "folds": args.folds,
                "f1_at_5": {
                    name: {"folds": values, "mean": round(float(np.mean(values)), 4)}
                    for name, values in folds.items()
                    if values
                },
                "chosen": record["chosen"],
                "seconds": round(time.perf_counter() - started, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
