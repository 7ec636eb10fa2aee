"""Benchmark: the HTTP service under concurrent clients on loopback, configurations side by side.

For each configuration, starts `mishon serve RUN` in its own process on a free port (with
`--workers N` for each N of `--workers`; first, with `--baseline-src DIR`, the code of another
checkout's `src/`, run as `python -m mishon serve` with that folder first on PYTHONPATH), waits
for /readyz (or /v1/health), then `--clients` threads send `--requests` POST /v1/recommend
requests in total (caption only, or with `--video FILE` the clip as an upload too), after
`--warmup` untimed requests sent the same way (the connections open and, with --workers, even
out among the workers: about a second from the worst split). Prints, per configuration,
throughput, latency p50 / p99 as the clients see it, and the count of non-200 answers, then
each throughput as a multiple of the first configuration's.

Usage: python benchmarks/serve.py RUN [--clients 16] [--requests 320] [--warmup 160]
       [--video clip.mp4] [--workers 1 2] [--baseline-src /path/to/other/checkout/src]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
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


def wait_ready(base: str, server: subprocess.Popen) -> float:
    started = time.perf_counter()
    while True:
        for path in ("/readyz", "/v1/health"):  # an older service has no /readyz
            try:
                if httpx.get(base + path, timeout=1).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
        if server.poll() is not None or time.perf_counter() - started > 300:
            raise SystemExit("the server did not start")
        time.sleep(0.2)


def load(base: str, args: argparse.Namespace) -> dict[str, float]:
    video = args.video.read_bytes() if args.video else None
    # one client with a connection per thread, kept alive: a new client per request cost the
    # benchmark 0.84 of this machine's 2 cores, leaving the server 1.2 (measured)
    pool = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    client = httpx.Client(timeout=120, limits=pool)

    def ask(i: int) -> tuple[int, float]:
        files = {"video": ("clip.mp4", video, "video/mp4")} if video else None
        data = {"caption": CAPTIONS[i % len(CAPTIONS)], "user_id": f"u{i % 50}", "k": "10"}
        clock = time.perf_counter()
        answer = client.post(base + "/v1/recommend", data=data, files=files)
        return answer.status_code, (time.perf_counter() - clock) * 1000

    with ThreadPoolExecutor(args.clients) as pool:
        # warm-up, sent as the timed requests are: the connections open, every worker has
        # answered, and with --workers the connections have evened out among them
        list(pool.map(ask, range(args.warmup)))
        clock = time.perf_counter()
        results = list(pool.map(ask, range(args.requests)))
        wall = time.perf_counter() - clock
    client.close()
    latencies = np.array([ms for _, ms in results])
    return {
        "throughput_per_s": round(args.requests / wall, 2),
        "p50_ms": round(float(np.percentile(latencies, 50)), 1),
        "p99_ms": round(float(np.percentile(latencies, 99)), 1),
        "errors": sum(status != 200 for status, _ in results),
    }


def measure(name: str, command: list[str], env: dict[str, str], args: argparse.Namespace) -> dict:
    port = free_port()
    with tempfile.TemporaryDirectory() as state:
        server = subprocess.Popen(
            [*command, "--port", str(port), *(["--state-dir", state] if "--workers" in command
                                              else [])],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            start_s = wait_ready(base, server)
            return {"server": name, "server_start_s": round(start_s, 1), **load(base, args)}
        finally:
            server.terminate()
            server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=320)
    parser.add_argument("--warmup", type=int, default=160, help="untimed requests first")
    parser.add_argument("--video", type=Path, default=None)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--baseline-src", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    if args.baseline_src is not None:
        env = {**os.environ, "PYTHONPATH": str(args.baseline_src.resolve())}
        command = [sys.executable, "-m", "mishon", "serve", str(args.run)]
        rows.append(measure(f"baseline {args.baseline_src}", command, env, args))
    for workers in args.workers:
        command = [sys.executable, "-m", "mishon", "serve", str(args.run), "--workers",
                   str(workers)]  # fmt: skip
        rows.append(measure(f"workers {workers}", command, dict(os.environ), args))
    first = rows[0]["throughput_per_s"]
    for row in rows:
        row["throughput_x_first"] = round(row["throughput_per_s"] / first, 2)
    print(json.dumps({"run": str(args.run), "clients": args.clients, "warmup": args.warmup,
                      "requests": args.requests,
                      "with_video": bool(args.video), "servers": rows}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
