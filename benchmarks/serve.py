"""Benchmark: the HTTP service under concurrent clients on loopback.

Starts `mishon serve RUN` in its own process on a free port, waits for /v1/health, then
`--clients` threads send `--requests` POST /v1/recommend requests in total (caption only, or
with `--video FILE` the clip as an upload too). Prints throughput, latency p50 / p99 as the
clients see it, and the count of non-200 answers (the target: none at 16 clients).

Usage: python benchmarks/serve.py RUN [--clients 16] [--requests 320] [--video clip.mp4]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

CAPTIONS = [
    "sunset at the beach with friends",
    "my cat sleeping on the sofa",
    "street food tour downtown",
    "morning run in the park",
    "new recipe: spicy noodles",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=320)
    parser.add_argument("--video", type=Path, default=None)
    args = parser.parse_args()
    port = free_port()
    mishon = Path(sys.executable).with_name("mishon")
    server = subprocess.Popen(
        [str(mishon), "serve", str(args.run), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        started = time.perf_counter()
        while True:
            try:
                if httpx.get(base + "/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.perf_counter() - started > 300:
                raise SystemExit("the server did not start")
            time.sleep(0.2)
        load_s = time.perf_counter() - started
        video = args.video.read_bytes() if args.video else None

        def ask(i: int) -> tuple[int, float]:
            files = {"video": ("clip.mp4", video, "video/mp4")} if video else None
            data = {"caption": CAPTIONS[i % len(CAPTIONS)], "user_id": f"u{i % 50}", "k": "10"}
            clock = time.perf_counter()
            with httpx.Client(timeout=120) as client:
                answer = client.post(base + "/v1/recommend", data=data, files=files)
            return answer.status_code, (time.perf_counter() - clock) * 1000

        ask(0)  # warm-up
        clock = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            results = list(pool.map(ask, range(args.requests)))
        wall = time.perf_counter() - clock
        latencies = np.array([ms for _, ms in results])
        errors = sum(status != 200 for status, _ in results)
        print(
            json.dumps(
                {
                    "run": str(args.run),
                    "clients": args.clients,
                    "requests": args.requests,
                    "with_video": bool(video),
                    "server_start_s": round(load_s, 1),
                    "throughput_per_s": round(args.requests / wall, 2),
                    "p50_ms": round(float(np.percentile(latencies, 50)), 1),
                    "p99_ms": round(float(np.percentile(latencies, 99)), 1),
                    "errors": errors,
                },
                indent=2,
            )
        )
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
