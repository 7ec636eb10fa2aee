"""The HTTP service: API, page, bounds, records and concurrency."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mishon.config import ServeSettings
from mishon.serve.app import create_app
from mishon.serve.service import HashtagService


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path) -> HashtagService:
    run = tmp_path_factory.mktemp("serve") / "run"
    shutil.copytree(tiny_run, run)
    return HashtagService(run, ServeSettings(max_upload_mb=1.0))


@pytest.fixture(scope="module")
def client(service: HashtagService) -> Iterator[TestClient]:
    with TestClient(create_app(service)) as test_client:
        yield test_client


def clip(service: HashtagService) -> Path:
    return sorted((service.recommender.run.data.dataset / "media").iterdir())[0]


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
    assert not list((service.run / "uploads").iterdir())  # the upload is gone


@pytest.mark.parametrize(
    ("data", "files", "status", "message"),
    [
        ({}, None, 422, "video, a caption or both"),
        ({"caption": "x", "k": "0"}, None, 422, "k: must be between 1 and 100"),
        ({"caption": "x", "user_id": "../etc"}, None, 422, "user_id"),
        ({"caption": "x" * 5001}, None, 422, "caption: longer than 5000"),
        ({}, {"video": ("a.txt", b"hello", "text/plain")}, 415, "content type 'text/plain'"),
        ({}, {"video": ("a.mp4", b"0" * (2 << 20), "video/mp4")}, 413, "larger than 1 MB"),
        ({}, {"video": ("a.mp4", b"not a video", "video/mp4")}, 200, None),
    ],
)
def test_bad_requests_get_clear_errors(
    client: TestClient, data: dict, files: dict | None, status: int, message: str | None
) -> None:
    answer = client.post("/v1/recommend", data=data, files=files)
    assert answer.status_code == status, answer.text
    if message:
        assert message in answer.json()["detail"]
    else:  # an undecodable video is noted, and the post still gets hashtags from the rest
        assert answer.json()["notes"]


def test_recorded_posts_shape_the_users_recommendations(client: TestClient) -> None:
    posted = client.post(
        "/v1/posts", json={"user_id": "newbie", "hashtags": ["#BrandNewTag"], "post_id": "n1"}
    )
    assert posted.status_code == 201 and posted.json()["hashtags"] == ["brandnewtag"]
    again = client.post("/v1/posts", json={"user_id": "newbie", "hashtags": ["x"], "post_id": "n1"})
    assert again.status_code == 409
    bad = client.post("/v1/posts", json={"user_id": "newbie", "hashtags": ["two words"]})
    assert bad.status_code == 422 and "whitespace" in bad.json()["detail"]
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
    assert "of the weight of the most similar posts" in found["harbourrace26"]["reasons"][0]


def test_recorded_posts_are_known_again_after_a_restart(service: HashtagService) -> None:
    service.record("carol", ["restarttag"], "a caption to place it by", "r1")
    again = HashtagService(service.run, service.settings)
    assert again.live.known.uses["restarttag"] == 1
    assert again.live.known.known.sum() == service.live.known.known.sum()
    assert again.weights_source.startswith("defaults")


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
