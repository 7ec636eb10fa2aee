from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mishon.config import SplitSettings
from mishon.data.schema import POSTS_SCHEMA
from mishon.data.split_data import load_split_data
from mishon.data.splits import make_split
from mishon.data.store import read_posts, write_split, write_table
from mishon.evaluate.evaluation import unavailable_baselines
from mishon.evaluate.run import evaluate
from mishon.features.base import Modality
from mishon.features.imported import import_vectors
from mishon.recommenders.baselines import (
    ContentKNN,
    DecayedPopularity,
    Popularity,
    SoundHistory,
    UserHistory,
)

POSTS = pd.DataFrame(
    {
        "post_id": [f"p{i}" for i in range(9)],
        "user_id": ["u1", "u1", "u2", "u2", "u2", "u3", "u1", "u2", "u9"],
        "hashtags": [["a", "b"], ["a"], ["c"], ["c", "a"], ["d"], ["d"], ["b"], ["c"], ["a"]],
        "split": ["train"] * 6 + ["test"] * 3,
    }
)
VECTORS = np.array(
    [[1, 0], [1, 0.1], [-1, 0], [-1, 0.1], [0, 1], [0, 1.1], [1, 0.05], [-1, 0.05], [0, 1]],
    dtype=np.float32,
)


def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    root.mkdir()
    write_table(POSTS, root / "posts.parquet", POSTS_SCHEMA)
    assignment, meta = make_split(read_posts(root), SplitSettings(strategy="given"))
    write_split(root, "given", assignment, meta)
    np.save(tmp_path / "v.npy", VECTORS)
    (tmp_path / "ids.txt").write_text("\n".join(POSTS["post_id"]) + "\n")
    import_vectors(root, Modality.TEXTUAL, tmp_path / "v.npy", tmp_path / "ids.txt")
    return root


def test_baselines_rank_as_documented(tmp_path: Path) -> None:
    data = load_split_data(dataset(tmp_path), "given")
    tests = data.cases("test")
    assert tests.tolist() == [6, 7, 8]
    popularity = Popularity()
    popularity.fit(data)
    # training counts: a 3, c 2, d 2, b 1; ties by name
    assert popularity.recommend(tests, 3) == [["a", "c", "d"]] * 3
    decayed = DecayedPopularity(half_life_posts=1 / 6)  # half-life of one training post
    decayed.fit(data)
    assert decayed.top(1) == ["d"]  # the two latest training posts use d
    history = UserHistory()
    history.fit(data)
    # u1 used a twice, b once; u2 used c twice, a and d once each (d more recently);
    # u9 has no history: popularity
    assert history.recommend(tests, 3) == [["a", "b", "c"], ["c", "d", "a"], ["a", "c", "d"]]
    knn = ContentKNN(neighbours=2)
    knn.fit(data)
    ranked = knn.recommend(tests, 2)
    assert ranked[0][0] in {"a", "b"} and set(ranked[1]) <= {"c", "a"} and ranked[2] == ["d"]


def test_evaluate_splits_warm_and_cold(tmp_path: Path) -> None:
    data = load_split_data(dataset(tmp_path), "given")
    history = UserHistory()
    history.fit(data)
    result = evaluate(history, data, "test", ks=(1, 3))
    assert result["cases"] == {"all": 3, "warm": 2, "cold": 1}
    # p6 (u1, truth b): [a, b, c], hit at 2; p7 (u2, truth c): hit at 1; p8 (u9, a): hit at 1
    assert result["all"]["HR@1"] == 2 / 3 and result["all"]["HR@3"] == 1.0
    assert result["warm"]["HR@1"] == 0.5 and result["cold"]["HR@1"] == 1.0
    assert result["vocabulary_coverage"] == 1.0


def test_the_sound_baseline_ranks_by_the_posts_with_the_same_sound(tmp_path: Path) -> None:
    root = dataset(tmp_path)
    data = load_split_data(root, "given")
    assert unavailable_baselines(["sound", "history"], data) == {"sound": "no post names its sound"}
    sounds = ["s1", "s2", "s1", None, "s2", "s3", "s1", None, "s3"]
    write_table(POSTS.assign(sound=sounds), root / "posts.parquet", POSTS_SCHEMA)
    data = load_split_data(root, "given")
    assert unavailable_baselines(["sound"], data) == {}
    sound = SoundHistory().fit(data)
    # s1's training posts: p0 (a, b) then p2 (c): one use each, the latest first, then by name;
    # a post with no sound gets popularity; s3 (p5: d) is filled up with popularity
    tests = data.cases("test")
    assert sound.recommend(tests, 3) == [["c", "a", "b"], ["a", "c", "d"], ["d", "a", "c"]]
    sound.observe(np.array([6]))  # p6 (s1: b) becomes known: b is used twice now
    assert sound.recommend(np.array([6]), 2) == [["b", "c"]]


def test_the_baselines_command_prints_json_and_writes_a_file(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from mishon.cli import app

    from .planted import planted_dataset

    dataset = planted_dataset(tmp_path / "ds")
    out = tmp_path / "results.json"
    args = ["baselines", str(dataset), "--only", "popularity,history", "--json", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    names = [r["recommender"] for r in printed["results"]]
    assert names == ["popularity", "user history"] and printed["skipped"] == {}
    assert json.loads(out.read_text()) == printed["results"]
    # --baselines, the name `mishon evaluate` uses, means the same
    same = CliRunner().invoke(app, ["baselines", str(dataset), "--baselines", "history", "--json"])
    assert [r["recommender"] for r in json.loads(same.stdout)["results"]] == ["user history"]


def test_every_recommender_is_built_by_name(tiny_run: Path) -> None:
    from mishon.errors import MishonError
    from mishon.recommenders import RECOMMENDER_NAMES, MishonRecommender, recommender
    from mishon.recommenders.live import LiveMishon
    from mishon.train.run import load_run

    loaded = load_run(tiny_run)
    assert isinstance(recommender("mishon", run=loaded), MishonRecommender)
    live = recommender("mishon-live", run=loaded)
    assert isinstance(live, LiveMishon)
    ranked = live.fit(loaded.data).recommend(loaded.data.cases("test")[:2], 3)
    assert len(ranked) == 2 and all(len(r) == 3 for r in ranked)
    assert recommender("history").name == "user history"
    with pytest.raises(MishonError, match="mishon-live ranks with a trained run"):
        recommender("mishon-live")
    with pytest.raises(
        MishonError, match=r"unknown recommender 'magic'; choose from .*mishon-live"
    ):
        recommender("magic")
    assert {"mishon", "mishon-live", "content-only"} <= set(RECOMMENDER_NAMES)
