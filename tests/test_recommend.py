"""Recommendation for new posts and users through the inductive path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mishon.features.store import FeatureStore, modality_dir
from mishon.recommend.inductive import InductiveRecommender, NewPost
from mishon.train.run import MishonRecommender, load_run, train_model

from .planted import planted_dataset, small_settings


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> InductiveRecommender:
    root = tmp_path_factory.mktemp("inductive")
    dataset = planted_dataset(root / "ds")
    train_model(dataset, small_settings(epochs=40), root / "run")
    return InductiveRecommender(load_run(root / "run"))


def stored_units(recommender: InductiveRecommender, position: int) -> NewPost:
    data = recommender.run.data
    store = FeatureStore.open(modality_dir(data.dataset, "textual"))
    row = int(data.rows[position])
    units = np.asarray(store.values[row], dtype=np.float32)
    return NewPost({"textual": (units, np.asarray(store.mask[row], dtype=bool))})


def test_graph_posts_through_the_inductive_path_match_the_full_model(
    trained: InductiveRecommender,
) -> None:
    full = MishonRecommender(trained.run.network, trained.run.inputs)
    for position in range(len(trained.post_ids)):
        expected = full.recommend(np.array([position]), 5)[0]
        assert [t for t, _ in trained.recommend_existing(position, 5)] == expected


def test_a_new_post_of_a_known_user_gets_the_users_and_the_topics_tags(
    trained: InductiveRecommender,
) -> None:
    data = trained.run.data
    position = int(data.cases("test")[0])
    post = stored_units(trained, position)
    post.user_id = str(data.posts["user_id"][position])
    result = trained.recommend(post, k=3)
    assert result.user_known
    tags = [t for t, _ in result.hashtags]
    assert set(data.posts["hashtags"][position]) <= set(tags)
    assert sum(s for _, s in result.hashtags) <= 1.0
    reasons = " ".join(" ".join(r) for r in result.reasons.values())
    assert "the user used it" in reasons and "similar textual post" in reasons
    assert all(n.kind == "post" for n in result.neighbours)


def test_a_new_user_is_linked_to_popular_users(trained: InductiveRecommender) -> None:
    post = stored_units(trained, 0)
    post.user_id = "somebody-new"
    result = trained.recommend(post, k=3)
    assert not result.user_known
    linked = [n for n in result.neighbours if n.kind == "user"]
    assert linked and all(n.id in trained.user_index for n in linked)
    # the content alone still finds the topic's tag
    topic = [t for t in trained.run.data.posts["hashtags"][0] if t.startswith("topic")][0]
    assert topic in [t for t, _ in result.hashtags]


def test_a_post_without_any_modality_still_gets_hashtags(trained: InductiveRecommender) -> None:
    result = trained.recommend(NewPost({}, user_id=None), k=4)
    assert len(result.hashtags) == 4 and not result.user_known
    assert result.as_dict()["hashtags"][0]["score"] > 0
