"""Benchmark: two service replicas on one PostgreSQL, as a platform runs them.

Starts a throwaway PostgreSQL (initdb and pg_ctl into a temporary folder, as the tests do;
or `--db URL`), then two `mishon serve RUN --db URL` processes on free ports, and measures:
1. Visibility: `--trials` times, a post with a new hashtag is recorded on replica A and
   replica B is asked for the same user until that hashtag is among its recommendations:
   seconds from A's acknowledgement to B's answer (p50, max; target: within 1 s).
2. Reload under load: `--clients` threads send `--requests` recommendations to A while A
   reloads its run (`POST /v1/admin/reload`): failed requests (target: 0).
3. A crash under load: the same threads record posts on both replicas; A is killed with
   SIGKILL half-way. Counts the acknowledged records (201), how many of them are in the
   database (target: all), and B's failed requests after the kill (target: 0).

Usage: python benchmarks/replicas.py RUN [--trials 20] [--clients 8] [--requests 400]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

TOKEN = "benchmark-token-0123456789"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def database(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.postgres_server import postgres_server

    with postgres_server() as started:
        yield started


def start(run: Path, db: str, state: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "MISHON_DB": db, "MISHON_TOKEN": TOKEN, "MISHON_FOLLOW_S": "0.25"}
    log = (state.parent / f"{state.name}.log").open("w")
    command = [sys.executable, "-m", "mishon", "serve", str(run), "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--state-dir", str(state)],
        env=env,
        stdout=log,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                return server, base
        if server.poll() is not None:
            raise SystemExit(f"replica exited: see {log.name}")
        time.sleep(0.3)
    raise SystemExit("replica did not become ready")


def visibility(a: str, b: str, trials: int) -> dict[str, float]:
    delays = []
    with httpx.Client(timeout=30) as client:
        for trial in range(trials):
            tag, user = f"visible{trial}x{int(time.time())}", f"vis{trial}"
            body = {"user_id": user, "hashtags": [tag], "caption": "a replica test"}
            assert client.post(a + "/v1/posts", json=body, headers=HEADERS).status_code == 201
            acknowledged = time.perf_counter()
            while True:
                answer = client.post(
                    b + "/v1/recommend", json={"caption": "a replica test", "user_id": user}
                ).json()
                if tag in [h["hashtag"] for h in answer["hashtags"]]:
                    break
                if time.perf_counter() - acknowledged > 10:
                    raise SystemExit(f"{tag} not seen on the other replica in 10 s")
                time.sleep(0.01)
            delays.append(time.perf_counter() - acknowledged)
    return {"trials": trials, "p50_s": round(float(np.median(delays)), 3),
            "max_s": round(max(delays), 3)}  # fmt: skip


def reload_under_load(a: str, clients: int, requests: int) -> dict[str, object]:
    def ask(i: int) -> int:
        with httpx.Client(timeout=120) as client:
            return client.post(a + "/v1/recommend", json={"caption": f"post {i}"}).status_code

    with ThreadPoolExecutor(clients) as pool:
        answers = pool.map(ask, range(requests))
        time.sleep(0.5)
        reloaded = httpx.post(a + "/v1/admin/reload", headers=HEADERS, timeout=600)
        statuses = list(answers)
    return {"requests": requests, "failed": sum(s != 200 for s in statuses),
            "reload": reloaded.json()}  # fmt: skip


def crash_under_load(
    a: tuple[subprocess.Popen, str], b: str, db: str, clients: int, requests: int
) -> dict[str, int]:
    acknowledged: list[str] = []
    failed_on_b_after = 0
    killed = threading.Event()
    lock = threading.Lock()

    def record(i: int) -> None:
        nonlocal failed_on_b_after
        target = a[1] if i % 2 == 0 else b
        post_id = f"crash-{i}"
        body = {"user_id": f"c{i % 20}", "hashtags": [f"crash{i % 7}"], "post_id": post_id}
        try:
            with httpx.Client(timeout=30) as client:
                status = client.post(target + "/v1/posts", json=body, headers=HEADERS).status_code
        except httpx.HTTPError:
            status = 0
        with lock:
            if status == 201:
                acknowledged.append(post_id)
            elif target == b and killed.is_set():
                failed_on_b_after += 1
        if i == requests // 2:
            os.kill(a[0].pid, signal.SIGKILL)
            killed.set()

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(record, range(requests)))
    import psycopg

    with psycopg.connect(db) as connection:
        stored = {r[0] for r in connection.execute("SELECT post_id FROM posts")}
    return {
        "records_sent": requests,
        "acknowledged": len(acknowledged),
        "acknowledged_in_database": sum(p in stored for p in acknowledged),
        "failed_on_the_other_replica_after_the_kill": failed_on_b_after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--db", default=None)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    with database(args.db) as db, tempfile.TemporaryDirectory() as folder:
        first = start(args.run, db, Path(folder) / "a")
        second = start(args.run, db, Path(folder) / "b")
        try:
            result = {
                "visibility": visibility(first[1], second[1], args.trials),
                "reload_under_load": reload_under_load(first[1], args.clients, args.requests),
                "crash_under_load": crash_under_load(
                    first, second[1], db, args.clients, args.requests
                ),
            }
        finally:
            for server, _ in (first, second):
                server.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    server.wait(timeout=30)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
