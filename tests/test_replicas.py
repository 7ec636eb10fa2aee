"""Serving a platform: replicas on one PostgreSQL, reload without downtime, records set aside,
and what operators read (/healthz, /readyz, /metrics, request ids, JSON log lines)."""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import count
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from mishon.config import ServeSettings
from mishon.recommend.featurize import PostFeaturizer
from mishon.serve.app import create_app
from mishon.serve.observe import JsonLines
from mishon.serve.service import HashtagService

from .postgres_server import fresh_database

_databases = count()
TOKEN = "admin-token-0123456789"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path) -> Path:
    """Two copies of the tiny run side by side (run, run2), as a runs/ folder holds them."""
    root = tmp_path_factory.mktemp("replicas") / "runs"
    for name in ("run", "run2"):
        shutil.copytree(tiny_run, root / name)
    return root


def _service(runs: Path, state: Path, **settings: object) -> HashtagService:
    return HashtagService(runs / "run", ServeSettings(state_dir=state, **settings))  # type: ignore[arg-type]


@pytest.fixture
def service(runs: Path, tmp_path: Path) -> Iterator[HashtagService]:
    opened = _service(runs, tmp_path / "state", token=TOKEN)
    yield opened
    opened.close()


def _tags(client: TestClient, caption: str, user: str, k: int = 10) -> list[str]:
    answer = client.post("/v1/recommend", data={"caption": caption, "user_id": user, "k": k})
    assert answer.status_code == 200, answer.text
    return [h["hashtag"] for h in answer.json()["hashtags"]]


def test_two_replicas_on_postgresql_see_each_others_posts_within_a_second(
    runs: Path, tmp_path: Path, postgres_url: str
) -> None:
    db = fresh_database(postgres_url, f"replicas{next(_databases)}")
    first = _service(runs, tmp_path / "a", db=db, follow_s=0.1)
    second = _service(runs, tmp_path / "b", db=db, follow_s=0.1)
    try:
        with TestClient(create_app(first)) as a, TestClient(create_app(second)) as b:
            assert "replicatag" not in _tags(b, "evening swim", "dora")
            posted = a.post(
                "/v1/posts",
                json={"user_id": "dora", "hashtags": ["ReplicaTag"], "caption": "evening swim"},
            )
            assert posted.status_code == 201
            recorded = time.monotonic()
            while "replicatag" not in _tags(b, "evening swim", "dora"):
                assert time.monotonic() - recorded < 1.0, "not seen by the other replica in 1 s"
                time.sleep(0.02)
            assert b.get("/v1/health").json()["recorded_posts"] == 1
        # a replica started later places the recorded post from its stored units
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(PostFeaturizer, "featurize", _no_extraction)
            third = _service(runs, tmp_path / "c", db=db)
        assert third.live.known_.uses["replicatag"] == 1
        third.close()
    finally:
        first.close()
        second.close()


def _no_extraction(*args: object) -> None:
    raise AssertionError("a recorded post was extracted again")


def test_a_damaged_record_is_set_aside_and_the_others_load(runs: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = _service(runs, state)
    first.record("erin", ["keptone"], "a good post", "good")
    first.record("erin", ["lostone"], "a bad post", "bad")
    first.record("erin", ["shapeless"], "a post of another shape", "shape")
    count, dim = first.store.all()[-1].units["textual"][0].shape  # type: ignore[union-attr]
    first.close()
    db = sqlite3.connect(state / "records.sqlite")
    with db:
        db.execute("UPDATE units SET units = X'00' WHERE post_id = 'bad'")
        wrong = _npy((count, dim + 1))
        db.execute("UPDATE units SET units = ? WHERE post_id = 'shape'", (wrong,))
    db.close()
    again = _service(runs, state)
    health = again.health()
    assert again.live.known_.uses["keptone"] == 1 and again.live.known_.uses["lostone"] == 0
    assert again.live.known_.uses["shapeless"] == 0
    damaged = sorted(health["damaged_records"])
    assert len(damaged) == 2 and "'bad'" in damaged[0] and "'shape'" in damaged[1]
    assert f"units of shape ({count}, {dim + 1}); this run takes ({count}, {dim})" in damaged[1]
    with TestClient(create_app(again)) as client:
        assert "mishon_damaged_records 2.0" in client.get("/metrics").text
    again.close()


def _npy(shape: tuple[int, ...]) -> bytes:
    from mishon.serve.store.base import units_to_bytes

    return units_to_bytes(np.zeros(shape, np.float32))


def test_a_reload_under_load_fails_no_request_and_keeps_the_recorded_posts(
    service: HashtagService,
) -> None:
    with TestClient(create_app(service)) as client:
        assert client.post("/v1/admin/reload", json={"run": "run2"}).status_code == 401
        service.record("fay", ["beforereload"], "before the reload", None)
        known = service.health()["known_posts"]
        headers = {"Authorization": f"Bearer {TOKEN}"}

        def ask(i: int) -> int:
            return client.post("/v1/recommend", data={"caption": f"post {i}", "k": 3}).status_code

        with ThreadPoolExecutor(4) as pool:
            answers = pool.map(ask, range(40))
            reloaded = client.post("/v1/admin/reload", json={"run": "run2"}, headers=headers)
            statuses = list(answers)
        assert reloaded.status_code == 200, reloaded.text
        assert statuses == [200] * 40
        health = client.get("/v1/health").json()
        assert health["run"] == "run2" and health["reloads"] == 1
        assert health["known_posts"] == known
        assert service.live.known_.uses["beforereload"] == 1
        refused = client.post("/v1/admin/reload", json={"run": "missing"}, headers=headers)
        assert refused.status_code == 422
        assert "still serving run2" in refused.json()["detail"]
        for name in ("..", "../run", "a/b"):
            answer = client.post("/v1/admin/reload", json={"run": name}, headers=headers)
            assert answer.status_code == 422, name
        assert client.post("/v1/admin/reload", headers=headers).json()["run"] == "run2"


def test_operations_endpoints_and_request_ids(
    service: HashtagService, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(create_app(service)) as client:
        assert client.get("/healthz").json() == {"status": "alive"}
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["version"].startswith("run@")
        with caplog.at_level(logging.INFO, logger="mishon.serve.requests"):
            answer = client.post(
                "/v1/recommend", data={"caption": "hi there"}, headers={"X-Request-ID": "abc-1"}
            )
        assert answer.headers["x-request-id"] == "abc-1"
        (line,) = [r for r in caplog.records if getattr(r, "request_id", None) == "abc-1"]
        assert line.status == 200 and line.endpoint == "/v1/recommend"  # type: ignore[attr-defined]
        made = client.get("/healthz", headers={"X-Request-ID": "bad id\u202e".encode()})
        assert len(made.headers["x-request-id"]) == 32  # a new one: the given one is refused
        client.get("/no/such/path")
        text = client.get("/metrics").text
    assert 'mishon_requests_total{endpoint="/v1/recommend",status="200"} 1.0' in text
    assert 'mishon_requests_total{endpoint="other",status="404"} 1.0' in text
    assert 'mishon_request_seconds_bucket{endpoint="/v1/recommend",le="+Inf"} 1.0' in text
    assert 'mishon_stage_seconds_count{stage="textual"} 1.0' in text
    assert 'mishon_model_info{run="run"' in text and "mishon_known_posts " in text


def test_readiness_fails_while_the_store_is_unreachable(
    runs: Path, tmp_path: Path, postgres_url: str
) -> None:
    db = fresh_database(postgres_url, f"ready{next(_databases)}")
    opened = _service(runs, tmp_path / "state", db=db, follow_s=0.1)
    try:
        opened.store._dsn = "postgresql://nobody@127.0.0.1:1/none"  # type: ignore[attr-defined]
        opened.store._db.close()  # type: ignore[attr-defined]
        with TestClient(create_app(opened)) as client:
            assert client.get("/readyz").status_code == 503
            assert client.get("/healthz").status_code == 200
            posted = client.post("/v1/posts", json={"user_id": "gus", "hashtags": ["lost"]})
            assert posted.status_code == 503 and "cannot be reached" in posted.json()["detail"]
            assert client.post("/v1/recommend", data={"caption": "still ranks"}).status_code == 200
    finally:
        opened.close()


def test_log_lines_are_json_with_their_fields() -> None:
    record = logging.LogRecord("mishon.serve", logging.INFO, "", 0, "hello %s", ("you",), None)
    record.request_id = "r1"
    line = json.loads(JsonLines().format(record))
    assert line["message"] == "hello you" and line["request_id"] == "r1"
    assert line["level"] == "info" and line["logger"] == "mishon.serve"


def test_a_json_body_a_batch_and_typed_answers_in_the_schema(service: HashtagService) -> None:
    with TestClient(create_app(service)) as client:
        as_json = client.post("/v1/recommend", json={"caption": "sunny beach day", "k": 4})
        as_form = client.post("/v1/recommend", data={"caption": "sunny beach day", "k": "4"})
        assert as_json.status_code == 200, as_json.text
        assert [h["hashtag"] for h in as_json.json()["hashtags"]] == [
            h["hashtag"] for h in as_form.json()["hashtags"]
        ]
        bad = client.post("/v1/recommend", json={"caption": "x", "user_id": "../etc"})
        assert bad.status_code == 422 and "user_id" in bad.json()["detail"]
        assert client.post("/v1/recommend", json={"k": 3}).status_code == 422
        batch = client.post(
            "/v1/recommend/batch",
            json={
                "posts": [
                    {"caption": "beach", "k": 2},
                    {"caption": "cat", "k": 0},
                    {"caption": "dog", "user_id": "u000", "k": 3},
                ]
            },
        )
        assert batch.status_code == 200, batch.text
        first, second, third = batch.json()["results"]
        assert len(first["answer"]["hashtags"]) == 2 and first["error"] is None
        assert second["answer"] is None and "k: must be between 1 and" in second["error"]
        assert len(third["answer"]["hashtags"]) == 3
        too_many = {"posts": [{"caption": "a"}] * (service.settings.max_batch + 1)}
        assert client.post("/v1/recommend/batch", json=too_many).status_code == 422
        schema = client.get("/openapi.json").json()
        answer = schema["paths"]["/v1/recommend"]["post"]["responses"]["200"]["content"]
        assert answer["application/json"]["schema"]["$ref"].endswith("/RecommendAnswer")
        bodies = schema["paths"]["/v1/recommend"]["post"]["requestBody"]["content"]
        assert {"multipart/form-data", "application/json"} <= set(bodies)
        ranked = schema["components"]["schemas"]["RankedHashtag"]["properties"]
        assert ranked["score"]["type"] == "number"


def test_posts_the_service_kept_in_the_run_directory_are_carried_into_the_store(
    runs: Path, tmp_path: Path
) -> None:
    """RUN/service.sqlite as 0.1.0 wrote it, one post with a caption and no units kept: copied
    into the empty store, its caption extracted, the run directory only read."""
    run = tmp_path / "old-run"
    shutil.copytree(runs / "run", run)
    legacy = sqlite3.connect(run / "service.sqlite")
    legacy.executescript(
        "CREATE TABLE posts (post_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, caption TEXT, "
        "hashtags TEXT NOT NULL, created_at REAL NOT NULL);"
        "CREATE TABLE units (post_id TEXT NOT NULL, modality TEXT NOT NULL, units BLOB NOT "
        "NULL, mask BLOB NOT NULL, PRIMARY KEY (post_id, modality));"
        """INSERT INTO posts VALUES ('old1', 'ivy', 'a sunny beach day', '["legacytag"]', 1.0);"""
    )
    legacy.commit()
    legacy.close()
    before = (run / "service.sqlite").read_bytes()
    service = HashtagService(run, ServeSettings(state_dir=tmp_path / "state"))
    try:
        assert service.store.count() == 1 and service.live.known_.uses["legacytag"] == 1
        assert service.live.known_.placed[service.live.known_.size - 1]  # placed by its caption
        assert (run / "service.sqlite").read_bytes() == before
    finally:
        service.close()
