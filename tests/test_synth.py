from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

from mishon.config import SynthSettings
from mishon.data.store import read_posts, read_users
from mishon.data.synth import World, build_world, generate_corpus
from mishon.data.validate import validate_dataset
from mishon.errors import MishonError

from .conftest import TINY


def test_corpus_is_valid_and_complete(tiny_corpus: tuple[Path, World]) -> None:
    out, _ = tiny_corpus
    assert validate_dataset(out) == []
    posts = read_posts(out)
    assert len(posts) == TINY.posts
    assert posts["user_id"].nunique() == TINY.users  # every user posts at least once
    assert posts["created_at"].is_monotonic_increasing
    for field in ("likes", "comments", "shares", "views"):
        assert (posts[field] >= 0).all()
    users = read_users(out)
    assert users is not None and (users["followers"] > 0).all()


def test_same_seed_same_corpus_whatever_the_worker_count(
    tmp_path: Path, tiny_corpus: tuple[Path, World]
) -> None:
    first, _ = tiny_corpus
    second = tmp_path / "again"
    generate_corpus(second, TINY.model_copy(update={"workers": 2}))
    pd.testing.assert_frame_equal(read_posts(first), read_posts(second))
    for clip in sorted((first / "media").iterdir()):
        assert clip.read_bytes() == (second / "media" / clip.name).read_bytes(), clip.name


def test_other_seed_other_corpus() -> None:
    a = build_world(TINY)
    b = build_world(TINY.model_copy(update={"seed": TINY.seed + 1}))
    assert a.posts["hashtags"].tolist() != b.posts["hashtags"].tolist()


def test_clips_decode_with_stated_length(tiny_corpus: tuple[Path, World]) -> None:
    out, world = tiny_corpus
    n_frames = round(TINY.duration_s * TINY.fps)
    n_samples = round(TINY.duration_s * TINY.sample_rate)
    sounds = world.truth_posts.set_index("post_id")["has_sound"]
    assert sounds.any() and not sounds.all()  # both kinds present in the tiny corpus
    for video in read_posts(out)["video"]:
        post_id = Path(video).stem
        with av.open(str(out / video)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
            assert len(frames) == n_frames
            assert frames[0].shape == (TINY.frame_size, TINY.frame_size, 3)
            assert len(container.streams.audio) == int(sounds[post_id])
        if sounds[post_id]:
            with av.open(str(out / video)) as container:
                assert container.streams.audio[0].sample_rate == TINY.sample_rate
                samples = np.concatenate(
                    [f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]
                )
            # AAC adds one frame of priming and pads the last frame: at most 2 x 1024 extra.
            assert n_samples <= len(samples) <= n_samples + 2048
            assert np.abs(samples).max() > 0.1  # there is sound, not silence


def test_resume_renders_only_missing_clips(tmp_path: Path, tiny_corpus: tuple[Path, World]) -> None:
    source, _ = tiny_corpus
    out = tmp_path / "partial"
    shutil.copytree(source, out)
    removed = sorted((out / "media").iterdir())[:5]
    for clip in removed:
        clip.unlink()
    (out / "posts.parquet").unlink()  # as if killed before the tables were written
    kept = {p.name: p.stat().st_mtime_ns for p in (out / "media").iterdir()}
    totals: list[int] = []
    generate_corpus(out, TINY, on_total=totals.append)
    assert totals == [5]
    for name, mtime in kept.items():
        assert (out / "media" / name).stat().st_mtime_ns == mtime
    for clip in removed:
        assert clip.read_bytes() == (source / "media" / clip.name).read_bytes()
    pd.testing.assert_frame_equal(read_posts(out), read_posts(source))


def test_other_settings_need_overwrite(tmp_path: Path, tiny_corpus: tuple[Path, World]) -> None:
    source, _ = tiny_corpus
    out = tmp_path / "c"
    shutil.copytree(source, out)
    with pytest.raises(MishonError, match="other settings; pass --overwrite"):
        generate_corpus(out, TINY.model_copy(update={"seed": 99}))


def test_settings_validation() -> None:
    with pytest.raises(ValueError, match="even"):
        SynthSettings(frame_size=95)
    with pytest.raises(ValueError, match="posts must be at least users"):
        SynthSettings(users=50, posts=20)


# The structure below is what later stages are meant to find; these checks use a
# metadata-only world (no clips), so they are fast at a useful size.
@pytest.fixture(scope="module")
def world() -> World:
    return build_world(SynthSettings(users=120, posts=3000, seed=0))


def test_modalities_follow_topic_only_partly(world: World) -> None:
    truth = world.truth_posts
    cfg = SynthSettings()
    for modality, fidelity in (
        ("visual_topic", cfg.visual_fidelity),
        ("acoustic_topic", cfg.acoustic_fidelity),
        ("textual_topic", cfg.textual_fidelity),
    ):
        agreement = (truth[modality] == truth["topic"]).mean()
        assert abs(agreement - fidelity) < 0.03, modality
    all_three = (
        (truth["visual_topic"] == truth["topic"])
        & (truth["acoustic_topic"] == truth["topic"])
        & (truth["textual_topic"] == truth["topic"])
    ).mean()
    assert all_three < 0.3  # no post gives its topic away in every modality by default


def test_topic_pairs_share_a_cue_so_no_modality_alone_decides() -> None:
    from mishon.data.synth.world import topic_styles

    styles = topic_styles(8)
    assert styles[0].hue == styles[1].hue and styles[0].shape != styles[1].shape
    assert styles[0].tone_hz == styles[4].tone_hz and styles[0].pulse_hz != styles[4].pulse_hz


def test_hashtag_habits_show_in_the_data(world: World) -> None:
    posts = world.posts.merge(world.truth_posts, on="post_id")
    users = {u["user_id"]: u for u in world.truth["users"]}
    topics = world.truth["topics"]
    # Topic hashtags go with the post's topic.
    on_topic = np.mean(
        [
            any(t in topics[k]["hashtags"] for t in tags)
            for tags, k in zip(posts.hashtags, posts.topic, strict=True)
        ]
    )
    assert on_topic > 0.9
    # Group habit tags are used only by members of their group.
    group_tag = {g["hashtag"]: g["group"] for g in world.truth["groups"]}
    for tags, user in zip(posts.hashtags, posts.user_id, strict=True):
        for tag in tags:
            if tag in group_tag:
                assert users[user]["group"] == group_tag[tag]
    # Late users copy their influencer's tag more often than early users do.
    influencer = world.truth["influencers"]
    rate: dict[bool, list[bool]] = {True: [], False: []}
    for tags, user in zip(posts.hashtags, posts.user_id, strict=True):
        info = users[user]
        if info["follows"] is not None:
            rate[info["late"]].append(influencer[info["follows"]] in tags)
        else:  # nobody to copy: no influencer tag at all
            assert not set(influencer.values()) & set(tags) or info["popular"]
    assert np.mean(rate[True]) > 1.5 * np.mean(rate[False]) > 0
    # Popular users have far more followers and higher engagement than others.
    followers = world.users.set_index("user_id")["followers"]
    popular = [u for u, info in users.items() if info["popular"]]
    assert followers[popular].min() > followers.drop(popular).median() * 10


def test_trends_rise_and_fall(world: World) -> None:
    posts = world.posts
    trend = world.truth["topics"][0]["trends"][0]
    peak = world.truth["topics"][0]["trend_peak_day"][0]
    days = (posts["created_at"] - posts["created_at"].min()).dt.total_seconds() / 86400
    near = posts[(days - peak).abs() < 5]["hashtags"].map(lambda t: trend in t).mean()
    far = posts[(days - peak).abs() > 40]["hashtags"].map(lambda t: trend in t).mean()
    assert near > 5 * far


def test_unlabeled_and_missing_modalities_present(world: World) -> None:
    posts = world.posts
    cfg = SynthSettings()
    assert abs((posts["hashtags"].str.len() == 0).mean() - cfg.unlabeled_fraction) < 0.015
    assert abs(posts["caption"].isna().mean() - cfg.no_caption_fraction) < 0.02
    assert abs((~world.truth_posts["has_sound"]).mean() - cfg.no_sound_fraction) < 0.02
    counts = Counter(t for tags in posts["hashtags"] for t in tags)
    assert counts.most_common(1)[0][1] < 0.2 * len(posts)  # no single tag dominates
