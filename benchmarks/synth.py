"""Benchmark: synthetic corpus generation (wall time, posts per second, peak memory).

Usage: python benchmarks/synth.py [--posts 1000] [--users 100] [--workers 2] [--out DIR]
Prints one line of figures; docs/benchmarks.md records the results.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

from mishon.config import SynthSettings
from mishon.data.synth import generate_corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="keep the corpus here")
    args = parser.parse_args()
    scratch = None
    out = args.out
    if out is None:
        scratch = Path(tempfile.mkdtemp(prefix="mishon-bench-"))
        out = scratch / "corpus"
    settings = SynthSettings(
        users=args.users, posts=args.posts, seed=args.seed, workers=args.workers
    )
    start = time.perf_counter()
    generate_corpus(out, settings, overwrite=True)
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in (out / "media").iterdir())
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        f"synth posts={args.posts} users={args.users} workers={args.workers} "
        f"cpus={platform.machine()}x{os.cpu_count()} "
        f"wall_s={seconds:.1f} posts_per_s={args.posts / seconds:.1f} "
        f"media_mb={size / 2**20:.1f} peak_rss_mb_main={own:.0f} peak_rss_mb_worker={children:.0f}"
    )
    if scratch is not None:
        shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
