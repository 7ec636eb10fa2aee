"""`mishon serve` as operators run it: several worker processes on one record store, SIGHUP
replacing them one by one while requests go on, SIGTERM ending it cleanly."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str, timeout: float = 30.0) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def _post(url: str, body: dict) -> int:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.status


def _wait_ready(base: str, server: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, "the service exited"
        try:
            if _get(f"{base}/readyz", 1.0)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("the service did not become ready")


def _replicas(base: str, want: int, known: int | None = None, seconds: float = 60) -> set[str]:
    """The worker processes that answer /v1/health (each connection may reach another),
    waiting until `want` of them answered, each knowing `known` posts if given."""
    seen: dict[str, int] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, health = _get(f"{base}/v1/health")
        assert status == 200
        seen[health["replica"]] = health["known_posts"]
        matching = {r for r, k in seen.items() if known is None or k == known}
        if len(matching) >= want:
            return matching
        time.sleep(0.05)
    raise AssertionError(f"replicas seen: {seen}")


@pytest.mark.skipif(sys.platform == "win32", reason="signals")
def test_workers_share_recorded_posts_and_sighup_replaces_them_without_failures(
    tiny_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "mishon", "serve", str(run), "--port", str(port),
               "--workers", "2", "--state-dir", str(tmp_path / "state")]  # fmt: skip
    environment = {**os.environ, "MISHON_FOLLOW_S": "0.1", "OMP_NUM_THREADS": "1"}
    log = (tmp_path / "serve.log").open("w")  # a pipe nobody reads would fill and block it
    server = subprocess.Popen(command, env=environment, stdout=log, stderr=log, text=True)
    try:
        _wait_ready(base, server)
        first = _replicas(base, 2)
        known = _get(f"{base}/v1/health")[1]["known_posts"]
        assert _post(f"{base}/v1/posts", {"user_id": "hal", "hashtags": ["workertag"]}) == 201
        assert _replicas(base, 2, known + 1) == first  # both took it in
        server.send_signal(signal.SIGHUP)
        answers: list[tuple[int, str, int]] = []  # status, replica, known posts
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until 20 answers in a row come from new ones
            status, health = _get(f"{base}/v1/health")
            answers.append((status, health.get("replica", ""), health.get("known_posts", -1)))
            if len(answers) >= 20 and not {r for _, r, _ in answers[-20:]} & first:
                break
            time.sleep(0.02)
        assert [s for s, _, _ in answers if s != 200] == []  # no request failed meanwhile
        new = {r for _, r, _ in answers[-20:]}
        assert new and not new & first and {k for _, _, k in answers[-20:]} == {known + 1}
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
    log.close()
    output = (tmp_path / "serve.log").read_text()
    assert server.returncode == 0, output
    lines = [json.loads(x) for x in output.splitlines() if x.startswith("{")]
    assert any(line.get("endpoint") == "/v1/posts" and line["status"] == 201 for line in lines)
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in tiny_run.iterdir())
    assert (tmp_path / "state" / "tmp").is_dir()  # the workers' temporary files go there


def test_a_serving_process_keeps_its_temporary_files_in_its_state_folder(
    tmp_path: Path,
) -> None:
    import tempfile

    from mishon.serve.service import keep_temporary_files_in

    saved = tempfile.tempdir
    try:
        folder = keep_temporary_files_in(tmp_path / "state")
        with tempfile.SpooledTemporaryFile(max_size=10) as spooled:
            spooled.write(b"x" * 100)  # rolled over to a file: in the state folder
            assert tempfile.gettempdir() == str(folder) == str(tmp_path / "state" / "tmp")
    finally:
        tempfile.tempdir = saved
