"""Benchmark: the scale-out figures of docs/benchmarks.md in one command.

Runs, each in its own process (so each peak memory is its own) and one after the other:
  extraction   Ray engine beside the single-process one on the same 300-post corpus
  graph        2,000,000 synthetic posts (small unit shapes) built with --engine ray
  train-full   full-batch epochs at 213,847 posts (paper unit shapes)
  train-mini   mini-batch steps at 213,847 posts, then at 2,000,000 posts (small shapes),
               with sampled validation of 20,000 posts
and prints each one's output. A mini-batch epoch at these sizes takes longer than a benchmark
should: the first steps are timed and the epoch extrapolated (benchmarks/train.py --steps).

Usage: python benchmarks/scale.py [--only extraction graph train-full train-mini] [--work DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
MINI = ["--batch-size", "256", "--fanouts", "5", "5", "--user-posts", "10", "--epochs", "1"]
SUITE: dict[str, list[list[str]]] = {
    "extraction": [["extract.py", "--posts", "300", "--engines", "local,ray", "--bbb-copies", "0"]],
    "graph": [
        [
            "graph.py",
            "--sizes",
            "2000000",
            "--dense-max",
            "0",
            "--engine",
            "ray",
            "--shapes",
            "small",
            "--users",
            "67860",
        ]
    ],
    "train-full": [["train.py", "--epochs", "2"]],
    "train-mini": [
        ["train.py", *MINI, "--steps", "5"],
        [
            "train.py",
            *MINI,
            "--steps",
            "3",
            "--posts",
            "2000000",
            "--users",
            "67860",
            "--shapes",
            "small",
            "--encode-sampled",
            "20000",
        ],
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(SUITE), default=list(SUITE))
    parser.add_argument(
        "--work", type=Path, default=None, help="scratch folder of the graph benchmark"
    )
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="mishon-scale-"))
    for name in args.only:
        for command in SUITE[name]:
            if command[0] == "graph.py":
                command = [*command, "--work", str(work)]
            print(f"== {name}: python benchmarks/{' '.join(command)}", flush=True)
            subprocess.run([sys.executable, str(HERE / command[0]), *command[1:]], check=True)


if __name__ == "__main__":
    main()
