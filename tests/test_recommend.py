"""Recommendation for new posts and users through the inductive path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mishon.cli import app
from mishon.features.store import FeatureStore, modality_dir
from mishon.model.inference import encode_eval
from mishon.recommenders import MishonRecommender
from mishon.recommenders.inductive import InductiveRecommender, NewPost
from mishon.train.run import load_run, train_model

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
    full = MishonRecommender(trained.run.network, trained.run.inputs).fit(trained.run.data)
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
    topic = next(t for t in trained.run.data.posts["hashtags"][0] if t.startswith("topic"))
    assert topic in [t for t, _ in result.hashtags]


def test_a_post_without_any_modality_still_gets_hashtags(trained: InductiveRecommender) -> None:
    result = trained.recommend(NewPost({}, user_id=None), k=4)
    assert len(result.hashtags) == 4 and not result.user_known
    assert result.as_dict()["hashtags"][0]["score"] > 0


def test_cli_recommend_for_a_video_and_caption(tiny_extracted: Path, tmp_path: Path) -> None:
    dataset = tmp_path / "ds"
    shutil.copytree(tiny_extracted, dataset)
    runner = CliRunner()
    assert (
        runner.invoke(app, ["data", "split", str(dataset), "--strategy", "random"]).exit_code == 0
    )
    config = tmp_path / "run.yaml"
    settings = small_settings(epochs=5)
    settings.graph.popular_min_posts = 1
    config.write_text(settings.model_dump_json())
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(dataset), "--out", str(run), "--config", str(config)])
    assert result.exit_code == 0, result.output
    clip = sorted((dataset / "media").iterdir())[0]
    args = ["recommend", str(run), "--video", str(clip), "--caption", "sunny day #beach", "-k", "3"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert len(answer["hashtags"]) == 3 and answer["user_known"] is False
    assert {"visual_s", "textual_s"} <= set(answer["timings_s"])
    result = runner.invoke(app, [*args, "--user", "nobody"])
    assert result.exit_code == 0 and "a new user (cold start)" in result.output
    result = runner.invoke(app, ["recommend", str(run), "--video", str(tmp_path / "no.mp4")])
    assert result.exit_code == 1 and "does not exist" in result.output
    result = runner.invoke(app, ["recommend", str(run), "--video", str(tmp_path)])
    assert result.exit_code == 1 and "is not a file" in result.output
    result = runner.invoke(app, ["recommend", str(run)])
    assert result.exit_code == 1 and "video, caption or sound" in result.output
    for name, content in (("noise.mp4", bytes(range(256)) * 64), ("empty.mp4", b"")):
        (tmp_path / name).write_bytes(content)
        result = runner.invoke(app, ["recommend", str(run), "--video", str(tmp_path / name)])
        assert result.exit_code == 1 and "the video cannot be read" in result.output, name


def test_the_python_api_checks_what_the_cli_checks(tiny_run: Path, tmp_path: Path) -> None:
    from mishon.api import HashtagRecommender
    from mishon.errors import MishonError

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    recommender = HashtagRecommender(run)
    for k in (-1, 0, -1000, 2.5, True):
        with pytest.raises(MishonError, match="k must be a whole number of at least 1"):
            recommender.recommend(caption="sunset", k=k)  # type: ignore[arg-type]
    with pytest.raises(MishonError, match="video, caption or sound"):
        recommender.recommend(caption="   ")
    with pytest.raises(MishonError, match="is not a file"):
        recommender.recommend(video=tmp_path)
    assert len(recommender.recommend(caption="sunset", k=2).hashtags) == 2


def test_graph_post_index_ivf_probing_every_list_equals_exact_search() -> None:
    from mishon.config import EdgeSettings, GraphSettings
    from mishon.recommenders.inductive import GraphPostIndex

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    present = rng.random(3000) > 0.1
    edges = EdgeSettings(k=7, threshold=0.1)
    exact = GraphPostIndex(vectors, present, edges, GraphSettings(exact_max=10_000), nprobe=1)
    graph = GraphSettings(exact_max=100, ivf_nlist=30)
    ivf = GraphPostIndex(vectors, present, edges, graph, nprobe=10_000)
    assert ivf.index.nlist == 30  # the graph's own list count
    assert exact.method == "exact" and ivf.method.startswith("ivf")
    for query in vectors[:20]:
        (a, sa), (b, sb) = exact.search(query), ivf.search(query)
        assert set(a.tolist()) == set(b.tolist()) and present[a].all()
        assert (sa >= 0.1).all()
        np.testing.assert_allclose(np.sort(sa), np.sort(sb), rtol=1e-5)


def test_imported_features_cannot_be_extracted_for_a_new_post(
    trained: InductiveRecommender,
) -> None:
    from mishon.errors import MishonError
    from mishon.recommend.featurize import PostFeaturizer

    with pytest.raises(MishonError, match="imported vectors"):
        PostFeaturizer.for_dataset(trained.run.data.dataset, ["textual"])


MODALITY_SETS = {1: ("textual",), 2: ("textual", "visual"), 3: ("textual", "visual", "acoustic")}


@pytest.fixture(scope="module")
def planted_by_modalities(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("modalities")
    return {
        count: planted_dataset(root / f"m{count}" / "ds", modalities=names, cold_users=3)
        for count, names in MODALITY_SETS.items()
    }


@pytest.mark.parametrize("modalities", sorted(MODALITY_SETS))
@pytest.mark.parametrize("aggregator", ["mean", "max", "min", "sum", "product"])
def test_the_inductive_path_is_the_full_model_for_every_aggregator(
    planted_by_modalities: dict[int, Path], tmp_path: Path, aggregator: str, modalities: int
) -> None:
    settings = small_settings(epochs=3)
    settings.model.aggregator = aggregator
    for name in ("visual", "acoustic"):
        getattr(settings.graph, name).k, getattr(settings.graph, name).threshold = 5, 0.2
    train_model(planted_by_modalities[modalities], settings, tmp_path / "run")
    recommender = InductiveRecommender(load_run(tmp_path / "run"))
    run = recommender.run
    assert run.network.modalities == sorted(
        MODALITY_SETS[modalities], key=["visual", "acoustic", "textual"].index
    )
    full = torch.softmax(run.network.scores(encode_eval(run.network, run.inputs)), dim=1)
    warm_users = run.data.warm_users()
    users = run.data.posts["user_id"].astype(str).to_numpy()
    cold = [p for p in range(len(users)) if users[p] not in warm_users]
    assert len(cold) == 3
    # the mean's layers in their one-node form; then (and for the others) by `layer_step`
    assert (recommender.frozen_layers is not None) == (aggregator == "mean")
    for form in ("one-node", "layer_step") if aggregator == "mean" else ("layer_step",):
        if form == "layer_step":
            recommender.__dict__["frozen_layers"] = None
        for position in range(len(users)):
            got = recommender.existing_probabilities(position)
            torch.testing.assert_close(got, full[position], rtol=1e-4, atol=1e-6)
        for position in cold:  # the cold-start user recomputed from its post and its links
            assert len(recommender.existing_links(int(run.inputs.post_user[position]))) > 0
            got = recommender.existing_probabilities(position, new_user=True)
            torch.testing.assert_close(got, full[position], rtol=1e-4, atol=1e-6)


def test_a_moved_dataset_is_named_as_the_fix(tiny_run: Path, tmp_path: Path) -> None:
    import json
    import shutil

    from typer.testing import CliRunner

    from mishon.cli import app

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    info = json.loads((run / "run.json").read_text())
    dataset = Path(info["dataset"])
    info["dataset"] = str(tmp_path / "where-it-was")  # the dataset has moved since training
    (run / "run.json").write_text(json.dumps(info))
    args = ["recommend", str(run), "--caption", "a sunny beach", "--json"]
    moved = CliRunner().invoke(app, args)
    assert moved.exit_code == 1
    assert "holds no dataset any more: if it moved, pass its new place with --dataset" in (
        " ".join(moved.output.split())
    )
    found = CliRunner().invoke(app, [*args, "--dataset", str(dataset)])
    assert found.exit_code == 0, found.output
