"""The HTTP service: API, page, bounds, records and concurrency."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from mishon.config import ServeSettings
from mishon.recommend.featurize import PostFeaturizer
from mishon.serve.app import create_app
from mishon.serve.service import HashtagService


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path) -> Iterator[HashtagService]:
    root = tmp_path_factory.mktemp("serve")
    run = root / "run"
    shutil.copytree(tiny_run, run)
    RUN_FILES[run] = _listing(run)
    service = HashtagService(run, ServeSettings(max_upload_mb=1.0, state_dir=root / "state"))
    yield service
    service.close()


RUN_FILES: dict[Path, dict[str, int]] = {}


def _listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def client(service: HashtagService) -> Iterator[TestClient]:
    with TestClient(create_app(service)) as test_client:
        yield test_client


MP4_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"


def clip(service: HashtagService) -> Path:
    return sorted((service.served.run.data.dataset / "media").iterdir())[0]


def test_health_page_and_openapi(client: TestClient) -> None:
    health = client.get("/v1/health").json()
    assert health["status"] == "ok" and health["vocabulary"] > 0
    assert set(health["modalities"]) == {"visual", "acoustic", "textual"}
    assert '<form id="form">' in client.get("/").text
    assert "/v1/recommend" in client.get("/openapi.json").json()["paths"]


def test_recommend_from_a_caption_and_from_a_video(
    client: TestClient, service: HashtagService
) -> None:
    answer = client.post("/v1/recommend", data={"caption": "sunny beach day", "k": "4"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert len(body["hashtags"]) == 4 and body["modalities"] == ["textual"]
    scores = [h["score"] for h in body["hashtags"]]
    assert scores == sorted(scores, reverse=True)
    with clip(service).open("rb") as handle:
        answer = client.post(
            "/v1/recommend",
            files={"video": ("mine.mp4", handle, "video/mp4")},
            data={"user_id": "u000", "k": "3"},
        )
    assert answer.status_code == 200, answer.text
    assert "visual" in answer.json()["modalities"]
    assert not list((service.state_dir / "uploads").iterdir())  # the upload is gone


@pytest.mark.parametrize(
    ("data", "files", "status", "message"),
    [
        ({}, None, 422, "give a video, a caption or a sound"),
        ({"caption": "x", "k": "0"}, None, 422, "k: must be between 1 and 100"),
        ({"caption": "x", "user_id": "../etc"}, None, 422, "user_id"),
        ({"caption": "x" * 5001}, None, 422, "caption: longer than 5000"),
        ({"caption": "x", "user_id": "u0003\n"}, None, 422, "user_id"),
        ({}, {"video": ("a.txt", b"hello", "text/plain")}, 415, "not a video container"),
        ({}, {"video": ("a.mp4", b"not a video", "video/mp4")}, 415, "not a video container"),
        ({}, {"video": ("a.mp4", b"0" * (3 << 20), "video/mp4")}, 413, "larger than"),
        ({}, {"video": ("a.mp4", MP4_HEAD + b"garbage" * 99, "video/mp4")}, 422, "cannot be read"),
    ],
)
def test_bad_requests_get_clear_errors(
    client: TestClient, data: dict, files: dict | None, status: int, message: str
) -> None:
    answer = client.post("/v1/recommend", data=data, files=files)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["detail"]
    assert "uploads" not in answer.json()["detail"]  # no server path in an answer


def test_a_video_is_recognised_by_its_bytes_not_its_declared_type(
    client: TestClient, service: HashtagService
) -> None:
    with clip(service).open("rb") as handle:  # as `curl -F video=@clip.mp4` sends it
        answer = client.post(
            "/v1/recommend",
            files={"video": ("clip.mp4", handle, "application/octet-stream")},
            data={"k": "3"},
        )
    assert answer.status_code == 200, answer.text
    assert "visual" in answer.json()["modalities"]


def test_recorded_posts_are_bounded(client: TestClient) -> None:
    def post(**body: object) -> tuple[int, str]:
        answer = client.post("/v1/posts", json={"user_id": "mallory", **body})
        return answer.status_code, answer.text

    assert post(hashtags=["x" * 101]) == (422, post(hashtags=["x" * 101])[1])
    assert "longer than 100 characters" in post(hashtags=["x" * 101])[1]
    assert "more than 50" in post(hashtags=[f"t{i}" for i in range(51)])[1]
    status, text = post(hashtags=["ok"], caption="c" * 70_000)
    assert status == 413 and "larger than 65,536 bytes" in text
    answer = client.post("/v1/posts", json={"user_id": "u0003\n", "hashtags": ["ok"]})
    assert answer.status_code == 422


def test_docs_page_loads_nothing_from_elsewhere(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert "POST /v1/recommend" in page.text and "POST /v1/posts" in page.text
    assert "<script" not in page.text and "cdn" not in page.text.lower()
    assert client.get("/redoc").status_code == 404


def test_recording_needs_the_token_where_one_is_set(service: HashtagService) -> None:
    saved = service.settings
    service.settings = ServeSettings(token="s3cret-token-0123456789")
    try:
        with TestClient(create_app(service)) as guarded:
            body = {"user_id": "tok", "hashtags": ["guarded"]}
            assert guarded.post("/v1/posts", json=body).status_code == 401
            wrong = {"Authorization": "Bearer not-the-token-0123456789"}
            assert guarded.post("/v1/posts", json=body, headers=wrong).status_code == 401
            accented = {"Authorization": "Bearer s3cret-tökèn".encode("latin-1")}
            assert guarded.post("/v1/posts", json=body, headers=accented).status_code == 401
            right = {"Authorization": "Bearer s3cret-token-0123456789"}
            assert guarded.post("/v1/posts", json=body, headers=right).status_code == 201
            assert guarded.post("/v1/recommend", data={"caption": "hi"}).status_code == 200
    finally:
        service.settings = saved


ECHO = FastAPI()


@ECHO.post("/")
async def echo(request: Request) -> dict:
    return {"bytes": len(await request.body())}


def test_body_limits_refuse_early_and_time_out() -> None:
    import asyncio

    from mishon.serve.guards import BodyLimits

    async def call(limit: int, headers: list, chunks: int, delay: float = 0.0) -> tuple[int, int]:
        pulled, sent = 0, []

        async def receive() -> dict:
            nonlocal pulled
            pulled += 1
            await asyncio.sleep(delay)
            return {"type": "http.request", "body": b"x" * 1000, "more_body": pulled < chunks}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/",
            "headers": headers,
            "query_string": b"",
            "root_path": "",
            "scheme": "http",
            "server": ("test", 80),
        }
        await BodyLimits(ECHO, lambda path: limit, timeout_s=0.2)(scope, receive, send)
        return next(m["status"] for m in sent if m["type"] == "http.response.start"), pulled

    declared = [(b"content-length", b"999999999")]
    assert asyncio.run(call(10_000, declared, 1000)) == (413, 0)  # refused before any read
    assert asyncio.run(call(10_000, [], 1000)) == (413, 11)  # refused as the limit passes
    assert asyncio.run(call(10**9, [], 1000, delay=0.01))[0] == 408  # too slow
    assert asyncio.run(call(10**9, [], 3)) == (200, 3)


def test_oversized_frames_are_refused_before_decoding(
    service: HashtagService, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mishon.media import decode

    monkeypatch.setattr(decode, "MAX_FRAME_PIXELS", 100)
    with pytest.raises(decode.MediaError, match=r"\d+ x \d+ frames are larger than the 100 pixels"):
        decode.sample_frames(clip(service), 2, 32)


def test_host_binding_rule() -> None:
    from mishon.serve.guards import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert is_loopback("localhost.") and is_loopback("127.1") and is_loopback("LocalHost")
    assert is_loopback("2130706433") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    assert not is_loopback("10.1") and not is_loopback("example.org")


def test_a_token_beyond_ascii_is_accepted_as_clients_send_it(service: HashtagService) -> None:
    saved = service.settings
    service.settings = ServeSettings(token="s3cret-tökèn-0123456789")
    try:
        with TestClient(create_app(service)) as guarded:
            body = {"user_id": "tok", "hashtags": ["utf8token"]}
            utf8 = {"Authorization": "Bearer s3cret-tökèn-0123456789".encode()}
            assert guarded.post("/v1/posts", json=body, headers=utf8).status_code == 201
    finally:
        service.settings = saved
    # the server decodes header bytes as latin-1: the raw bytes decide, as the client sent them
    from fastapi import HTTPException

    from mishon.serve.guards import check_token

    token = "s3cret-tökèn-0123456789"
    check_token(token, ("Bearer " + token).encode().decode("latin-1"))
    with pytest.raises(HTTPException):
        check_token(token, ("Bearer " + token).encode("latin-1").decode("latin-1"))


def test_recorded_posts_shape_the_users_recommendations(client: TestClient) -> None:
    posted = client.post(
        "/v1/posts", json={"user_id": "newbie", "hashtags": ["#BrandNewTag"], "post_id": "n1"}
    )
    assert posted.status_code == 201 and posted.json()["hashtags"] == ["brandnewtag"]
    again = client.post("/v1/posts", json={"user_id": "newbie", "hashtags": ["x"], "post_id": "n1"})
    assert again.status_code == 409
    bad = client.post("/v1/posts", json={"user_id": "newbie", "hashtags": ["two words"]})
    assert bad.status_code == 422 and "whitespace" in bad.json()["detail"]
    for hostile in ("nul\x00tag", "zero\u200bwidth", "bidi\u202etag", "<script>"):
        bad = client.post("/v1/posts", json={"user_id": "newbie", "hashtags": [hostile]})
        assert bad.status_code == 422, hostile
    body = client.post(
        "/v1/recommend", data={"caption": "hello", "user_id": "newbie", "k": "10"}
    ).json()
    mine = next(h for h in body["hashtags"] if h["hashtag"] == "brandnewtag")
    assert mine["reasons"][0] == "the user chose it in 1 known post(s)"
    assert mine["evidence"]["history"] == 1.0
    assert client.get("/v1/health").json()["recorded_posts"] >= 1


def test_a_hashtag_recorded_for_one_user_reaches_similar_posts_of_others(
    client: TestClient, service: HashtagService
) -> None:
    caption = "sunrise paddle race across the harbour with the blue team"
    before = client.post("/v1/recommend", data={"caption": caption, "user_id": "bob", "k": "5"})
    assert "harbourrace26" not in [h["hashtag"] for h in before.json()["hashtags"]]
    known = service.health()["known_posts"]
    posted = client.post(
        "/v1/posts", json={"user_id": "alice", "hashtags": ["#HarbourRace26"], "caption": caption}
    )
    assert posted.status_code == 201
    assert service.health()["known_posts"] == known + 1
    after = client.post("/v1/recommend", data={"caption": caption, "user_id": "bob", "k": "5"})
    found = {h["hashtag"]: h for h in after.json()["hashtags"]}
    assert "harbourrace26" in found  # not in the model's vocabulary: from the known posts
    assert found["harbourrace26"]["evidence"]["neighbours"] > 0
    # and the network scores it too, by the inductive hashtag side's row for it
    assert found["harbourrace26"]["evidence"]["model_outside"] > 0
    assert "of the weight of the most similar posts" in found["harbourrace26"]["reasons"][0]


def test_recorded_posts_are_known_again_after_a_restart(
    service: HashtagService, monkeypatch: pytest.MonkeyPatch
) -> None:
    service.record("carol", ["restarttag"], "a caption to place it by", "r1")
    fused = service.live.known_.fused[service.live.known_.known].copy()

    def no_extraction(*args: object) -> None:
        raise AssertionError("a recorded post was extracted again at start-up")

    monkeypatch.setattr(PostFeaturizer, "featurize", no_extraction)
    again = HashtagService(service.run, service.settings)
    np.testing.assert_allclose(again.live.known_.fused[again.live.known_.known], fused, atol=1e-6)
    assert again.live.known_.uses["restarttag"] == 1
    assert again.live.known_.known.sum() == service.live.known_.known.sum()
    assert again.weights_source.startswith("defaults")
    again.close()


def test_concurrent_requests_all_succeed(client: TestClient) -> None:
    def ask(i: int) -> int:
        return client.post("/v1/recommend", data={"caption": f"post {i}", "k": "5"}).status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(ask, range(16))) == [200] * 16


def test_a_slow_recommendation_answers_504(service: HashtagService) -> None:
    saved = service.settings
    service.settings = ServeSettings(timeout_s=1e-6)
    try:
        with TestClient(create_app(service)) as slow:
            answer = slow.post("/v1/recommend", data={"caption": "hello"})
    finally:
        service.settings = saved
    assert answer.status_code == 504 and "longer than" in answer.json()["detail"]


def test_nothing_is_written_into_the_run_directory(
    client: TestClient, service: HashtagService
) -> None:
    """After recommending from a video and recording posts (the tests above), the run
    directory holds exactly what it held before the service started; the service's files are
    in its state folder."""
    client.post("/v1/posts", json={"user_id": "w", "hashtags": ["somewhere"], "caption": "hi"})
    assert _listing(service.run) == RUN_FILES[service.run]
    assert (service.state_dir / "records.sqlite").is_file()
