"""Posts known by the sound they use (a platform's export: no video, no caption): extraction,
training, evaluation with the sound baseline, and new posts through the API, the command line
and the service."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from mishon.api import HashtagRecommender
from mishon.cli import app
from mishon.config import ExtractSettings, ServeSettings
from mishon.data.split_data import load_split_data
from mishon.errors import MishonError
from mishon.evaluate.evaluation import evaluate_baselines
from mishon.features.extract import extract_features
from mishon.serve.app import create_app
from mishon.serve.service import HashtagService
from mishon.train.run import train_model

from .planted import small_settings, write_given_split

SOUNDS = 4


def sound_dataset(root: Path, users: int = 12, posts_per_user: int = 8, seed: int = 0) -> Path:
    """Each post uses one of SOUNDS trending sounds and carries that sound's challenge tag and
    its user's own tag: only the sound tells the challenge."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        for p in range(posts_per_user):
            sound = int(rng.integers(SOUNDS))
            split = (
                "train"
                if p < posts_per_user - 2
                else ("valid" if p < posts_per_user - 1 else "test")
            )
            rows.append(
                {
                    "post_id": f"u{u}p{p}",
                    "user_id": f"u{u}",
                    "hashtags": [f"challenge{sound}", f"mine{u}"],
                    "sound": f"trend song {sound}",
                    "split": split,
                }
            )
    return write_given_split(root, pd.DataFrame(rows))


@pytest.fixture(scope="module")
def sound_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sounds")
    dataset = sound_dataset(root / "ds")
    report = extract_features(dataset, ExtractSettings(workers=0))
    assert list(report.modalities) == ["acoustic"]
    settings = small_settings(epochs=30)
    settings.graph.acoustic.k = 5
    settings.graph.popular_min_posts = 1
    train_model(dataset, settings, root / "run")
    return root / "run"


def test_the_sound_baseline_reads_earlier_posts_with_the_same_sound(sound_run: Path) -> None:
    data = load_split_data(sound_run.parent / "ds", "given")
    results, skipped = evaluate_baselines(["popularity", "sound"], data, "test")
    assert skipped == {}
    by_name = {r["recommender"]: r["all"] for r in results}
    # the challenge tag is one of two true tags: the sound finds it in first place every time
    assert by_name["sound"]["HR@1"] == pytest.approx(1.0)
    assert by_name["popularity"]["HR@1"] < 0.6


def test_a_new_post_is_placed_by_its_sound(sound_run: Path) -> None:
    recommender = HashtagRecommender(sound_run)
    for sound in range(SOUNDS):
        # a new user: only the sound can tell the challenge
        result = recommender.recommend(sound=f"Trend Song {sound}", k=3)
        assert result.hashtags[0][0] == f"challenge{sound}", result.hashtags
    with pytest.raises(MishonError, match="give the post's video, caption or sound"):
        recommender.recommend(sound="  ")


def test_the_command_line_takes_a_sound(sound_run: Path) -> None:
    args = ["recommend", str(sound_run), "--sound", "trend song 2", "--json", "-k", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["hashtags"][0]["hashtag"] == "challenge2"


@pytest.fixture(scope="module")
def client(sound_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    state = tmp_path_factory.mktemp("sound-state")
    service = HashtagService(sound_run, ServeSettings(state_dir=state))
    with TestClient(create_app(service)) as test_client:
        yield test_client
    service.close()


def test_the_service_takes_a_sound(client: TestClient) -> None:
    answer = client.post("/v1/recommend", json={"sound": "trend song 1", "k": 2})
    assert answer.status_code == 200, answer.text
    assert answer.json()["hashtags"][0]["hashtag"] == "challenge1"
    assert answer.json()["modalities"] == ["acoustic"]
    form = client.post("/v1/recommend", data={"sound": "trend song 3", "k": "2"})
    assert form.json()["hashtags"][0]["hashtag"] == "challenge3"
    refused = client.post("/v1/recommend", json={"user_id": "u1"})
    assert refused.status_code == 422 and "give a video, a caption or a sound" in refused.text
    too_long = client.post("/v1/recommend", json={"sound": "x" * 501})
    assert too_long.status_code == 422 and "sound: longer than 500" in too_long.text
    batch = client.post(
        "/v1/recommend/batch", json={"posts": [{"sound": "trend song 0"}, {"sound": " "}]}
    )
    found, empty = batch.json()["results"]
    assert found["answer"]["hashtags"][0]["hashtag"] == "challenge0"
    assert empty["error"] == "give a caption or a sound"


def test_a_recorded_post_with_a_new_sound_teaches_its_hashtag(client: TestClient) -> None:
    def ranked() -> dict[str, dict]:
        answer = client.post("/v1/recommend", json={"sound": "brand new song", "k": 5}).json()
        return {h["hashtag"]: h for h in answer["hashtags"]}

    assert "brandnewdance" not in ranked()
    posted = client.post(
        "/v1/posts",
        json={"user_id": "u1", "hashtags": ["brandnewdance"], "sound": "Brand New Song"},
    )
    assert posted.status_code == 201, posted.text
    # the recorded post has the same sound: the content and sound evidence read its hashtag
    found = ranked()["brandnewdance"]
    assert found["evidence"]["content"] > 0.4 and found["evidence"]["sound"] == 1.0
    assert "100% of the known posts with this sound carry it" in found["reasons"]


def test_a_recorded_posts_sound_is_kept_for_every_replica(sound_run: Path, tmp_path: Path) -> None:
    settings = ServeSettings(state_dir=tmp_path / "state")
    first = HashtagService(sound_run, settings)
    first.record("u1", ["newsongdance"], None, None, sound="Another New Song")
    first.close()
    # a service started later places the post from the store, with its sound's identity
    second = HashtagService(sound_run, settings)
    answer = second.recommend(None, None, "u5", 5, sound="another new song")
    found = {h["hashtag"]: h for h in answer["hashtags"]}
    assert found["newsongdance"]["evidence"]["sound"] == 1.0
    second.close()


def test_the_ablation_runs_on_posts_known_by_their_sound(sound_run: Path, tmp_path: Path) -> None:
    dataset = sound_run.parent / "ds"
    args = ["experiment", "ablation", str(dataset), "--out", str(tmp_path / "abl"), "--seeds", "1"]
    settings = ["--set", "train.epochs=3", "--set", "model.hidden=16"]
    result = CliRunner().invoke(app, [*args, *settings])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "abl" / "ablation.json").read_text())["rows"]
    by_name = {row["variant"]: row for row in rows}
    # every variant trained, the one without the sound's edges among them
    assert "no modality-modality edges" in by_name
    assert all(not row["failed_seeds"] and row["all F1@5"]["mean"] > 0 for row in rows)
