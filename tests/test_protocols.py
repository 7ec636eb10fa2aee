"""Evaluation protocols: what each recommender knows when it ranks a post."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mishon.config import SplitSettings
from mishon.data.schema import POSTS_SCHEMA
from mishon.data.split_data import SplitData, load_split_data
from mishon.data.splits import make_split
from mishon.data.store import read_posts, write_split, write_table
from mishon.errors import MishonError
from mishon.evaluate.protocols import rank_under, stream_order
from mishon.evaluate.run import evaluate
from mishon.features.base import Modality
from mishon.features.imported import import_vectors
from mishon.recommenders import MishonRecommender, baseline
from mishon.train.run import train_model

from .planted import planted_dataset, small_settings

DAY = pd.Timestamp("2026-01-01", tz="UTC")
POSTS = pd.DataFrame(
    {
        "post_id": [f"p{i}" for i in range(10)],
        "user_id": ["u1", "u1", "u2", "u2", "u2", "u1", "u2", "u1", "u3", "u1"],
        "hashtags": [
            ["a", "b"], ["a"], ["c"], ["c", "a"], ["d"],  # training
            ["v"],  # valid
            ["c"], ["z"], ["z", "a"], ["z"],  # test: z is born after training
        ],
        "split": ["train"] * 5 + ["valid"] + ["test"] * 4,
        # test posts arrive in the order p7, p9, p6, p8 (p8 has no time: after p7 in the file)
        "created_at": [
            pd.NaT if d is None else DAY + pd.Timedelta(days=d)
            for d in (0, 1, 2, 3, 4, 5, 9, 6, None, 7)
        ],
    }
)  # fmt: skip


def tiny(tmp_path: Path, posts: pd.DataFrame = POSTS) -> SplitData:
    root = tmp_path / "ds"
    root.mkdir(exist_ok=True)
    write_table(posts, root / "posts.parquet", POSTS_SCHEMA)
    assignment, meta = make_split(read_posts(root), SplitSettings(strategy="given"))
    write_split(root, "given", assignment, meta)
    vectors = np.eye(10, 4, dtype=np.float32) + 0.1
    np.save(tmp_path / "v.npy", vectors)
    (tmp_path / "ids.txt").write_text("\n".join(posts["post_id"]) + "\n")
    import_vectors(root, Modality.TEXTUAL, tmp_path / "v.npy", tmp_path / "ids.txt", overwrite=True)
    return load_split_data(root, "given")


def test_stream_order_is_time_then_dataset_order(tmp_path: Path) -> None:
    data = tiny(tmp_path)
    assert stream_order(data, data.cases("test")).tolist() == [7, 8, 9, 6]


def test_user_history_learns_new_hashtags_as_the_stream_goes(tmp_path: Path) -> None:
    data = tiny(tmp_path)
    static = rank_under(baseline("history").fit(data), data, "test", "static", 3)
    known = rank_under(baseline("history").fit(data), data, "test", "known-past", 3)
    stream = rank_under(baseline("history").fit(data), data, "test", "stream", 3)
    cases = data.cases("test").tolist()
    p9 = cases.index(9)
    assert "z" not in static[p9] and "z" not in known[p9]
    # u1 tagged p7 with z (ranked and revealed before p9): z follows a (used twice), by recency
    assert stream[p9][:2] == ["a", "z"]
    assert "v" in known[p9] and "v" not in static[p9]  # the valid post of u1
    result = evaluate(baseline("history").fit(data), data, "test", (1, 5, 10), "stream")
    assert result["protocol"] == "stream"
    # z occurs 3 times in test and never in training: p7's is not found (first), p9's is in the
    # top 5, p8's (cold user u3: popularity, z 1 use, 6th by name among ties) only in the top 10
    assert result["new_hashtags"] == {"occurrences": 3, "R@5": 1 / 3, "R@10": 2 / 3}
    assert result["known_hashtags"]["occurrences"] == 2


def test_decayed_popularity_weighs_recent_uses_the_same_incrementally(tmp_path: Path) -> None:
    data = tiny(tmp_path)
    decayed = baseline("decayed").fit(data)
    decayed.observe(np.array([5]))
    half_life = decayed.half_life_
    ages = {0: 5, 1: 4, 2: 3, 3: 2, 4: 1, 5: 0}  # days before the latest known post
    expected: dict[str, float] = {}
    for position, age in ages.items():
        for tag in POSTS["hashtags"][position]:
            expected[tag] = expected.get(tag, 0.0) + 0.5 ** (age / half_life)
    scale = expected["v"] / decayed.counts_["v"]
    for tag, value in expected.items():
        assert decayed.counts_[tag] * scale == pytest.approx(value)


@pytest.mark.parametrize("name", ["popularity", "decayed", "history", "content-knn"])
def test_no_post_sees_its_own_or_later_hashtags(tmp_path: Path, name: str) -> None:
    data = tiny(tmp_path)
    order = stream_order(data, data.cases("test")).tolist()
    cases = data.cases("test").tolist()
    before = rank_under(baseline(name).fit(data), data, "test", "stream", 10)
    for changed in order:  # give each test post other hashtags in turn
        posts = data.posts.copy()
        posts.at[changed, "hashtags"] = ["leak", "other"]
        altered = SplitData(data.dataset, data.split_name, posts, data.rows, data.all_post_ids)
        after = rank_under(baseline(name).fit(altered), altered, "test", "stream", 10)
        earlier = order[: order.index(changed) + 1]  # the changed post itself included
        for position in earlier:
            assert after[cases.index(position)] == before[cases.index(position)]


def test_mishon_takes_in_known_posts_without_seeing_the_future(tmp_path: Path) -> None:
    dataset = planted_dataset(tmp_path / "planted" / "ds")
    network, inputs, data, _ = train_model(dataset, small_settings(epochs=5), None)
    static = MishonRecommender(network, inputs).fit(data)
    known = MishonRecommender(network, inputs).fit(data)
    known.observe(data.cases("valid"))
    cases = data.cases("test")
    known.recommend(cases[:1], 3)
    assert not np.allclose(static.fused_.numpy(), known.fused_.numpy())  # valid tags in use
    order = stream_order(data, cases).tolist()
    original = MishonRecommender(network, inputs).fit(data)
    before = rank_under(original, data, "test", "stream", 5)
    changed = order[len(order) // 2]
    posts = data.posts.copy()
    posts.at[changed, "hashtags"] = ["topic0", "topic1", "topic2"]
    altered = SplitData(data.dataset, data.split_name, posts, data.rows, data.all_post_ids)
    other = MishonRecommender(network, inputs).fit(altered)
    after = rank_under(other, altered, "test", "stream", 5)
    position = {p: i for i, p in enumerate(cases.tolist())}
    for earlier in order[: order.index(changed) + 1]:
        assert after[position[earlier]] == before[position[earlier]]
    # the changed hashtags do reach the posts ranked after it
    for recommender in (original, other):
        recommender.recommend(cases[:1], 1)
    assert not np.allclose(other.fused_.numpy(), original.fused_.numpy())


def test_unknown_protocols_are_refused(tmp_path: Path) -> None:
    data = tiny(tmp_path)
    with pytest.raises(MishonError, match=r"unknown protocol 'future'"):
        evaluate(baseline("popularity").fit(data), data, "test", protocol="future")


def test_cli_evaluate_under_each_protocol(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from mishon.cli import app

    dataset = planted_dataset(tmp_path / "planted" / "ds")
    train_model(dataset, small_settings(epochs=5), tmp_path / "run")
    runner = CliRunner()
    written = {}
    for protocol in ("static", "known-past", "stream"):
        result = runner.invoke(
            app,
            ["evaluate", str(tmp_path / "run"), "--baselines", "popularity,history",
             "--protocol", protocol, "--refresh", "4"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        suffix = "" if protocol == "static" else f"-{protocol}"
        saved = json.loads((tmp_path / "run" / f"evaluation-test{suffix}.json").read_text())
        assert saved["protocol"] == protocol
        assert {r["protocol"] for r in saved["results"]} == {protocol}
        written[protocol] = {r["recommender"]: r["all"]["F1@5"] for r in saved["results"]}
    # the user's validation post tells user history the user's own tag: known-past helps it
    assert written["known-past"]["user history"] >= written["static"]["user history"]
    result = runner.invoke(app, ["evaluate", str(tmp_path / "run"), "--protocol", "future"])
    assert result.exit_code == 2 and "'future' is not one of 'static'" in result.output


def test_an_experiment_under_a_protocol_keeps_its_own_files(tmp_path: Path) -> None:
    from mishon import experiments

    dataset = planted_dataset(tmp_path / "planted" / "ds")
    summary = experiments.run_experiment(
        "aggregators", dataset, small_settings(epochs=2), tmp_path / "agg", seeds=1,
        protocol="known-past", refresh_every=8,
    )  # fmt: skip
    assert summary["protocol"] == "known-past"
    assert (tmp_path / "agg" / "aggregators-known-past.md").is_file()
    assert not (tmp_path / "agg" / "aggregators.md").exists()
    files = sorted(p.name for p in (tmp_path / "agg" / "variants").iterdir())
    assert files and all("-known-past-seed" in name for name in files)


def test_an_experiment_with_live_evidence_adds_a_row_per_variant(tmp_path: Path) -> None:
    from mishon import experiments

    dataset = planted_dataset(tmp_path / "planted" / "ds")
    summary = experiments.run_experiment(
        "aggregators", dataset, small_settings(epochs=2), tmp_path / "agg", seeds=1,
        protocol="stream", refresh_every=8, live=True,
    )  # fmt: skip
    names = [row["variant"] for row in summary["rows"]]
    assert names[:2] == ["mean", "mean + live"] and len(names) == 10
    assert (tmp_path / "agg" / "aggregators-stream-live.md").is_file()
    assert "| mean + live |" in (tmp_path / "agg" / "aggregators-stream-live.md").read_text()


def test_a_stream_evaluation_tells_how_far_it_is_and_how_long_is_left(tmp_path: Path) -> None:
    from mishon.evaluate.evaluation import evaluate_run
    from mishon.train.run import train_model

    dataset = planted_dataset(tmp_path / "ds")
    train_model(dataset, small_settings(epochs=2), tmp_path / "run")
    told: list[str] = []
    evaluate_run(tmp_path / "run", baselines="history", protocol="stream", stage=told.append)
    for name in ("MISHON", "MISHON live, validation stream", "MISHON live", "history"):
        last = [t for t in told if t.startswith(f"{name}: ranking ")][-1]
        done, total = last.split("ranking ")[1].split(" posts")[0].split("/")
        assert done == total and int(total) > 0 and last.endswith("left")
