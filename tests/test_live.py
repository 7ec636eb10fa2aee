"""MISHON live: evidence from the known posts, weights selected on validation posts."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mishon.data.split_data import SplitData
from mishon.errors import MishonError
from mishon.evaluate.evaluation import evaluate_run
from mishon.evaluate.live import select_live_weights
from mishon.evaluate.protocols import rank_under, stream_order
from mishon.recommenders.evidence import (
    EVIDENCE,
    EvidenceSettings,
    EvidenceTable,
    KnownPosts,
    Query,
    _column,
    gather_evidence,
)
from mishon.recommenders.live import (
    DEFAULT_WEIGHTS,
    LiveMishon,
    LiveWeights,
    select_weights,
)
from mishon.train.run import load_run, train_model

from .planted import planted_dataset, small_settings


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    root = tmp_path_factory.mktemp("live")
    dataset = planted_dataset(root / "ds")
    network, inputs, data, _ = train_model(dataset, small_settings(epochs=5), None)
    return network, inputs, data


def _table(rows: dict[str, dict[str, float]]) -> EvidenceTable:
    tags = list(rows)
    values = np.array([[rows[t].get(name, 0.0) for name in EVIDENCE] for t in tags])
    return EvidenceTable(tags, values)


def rank_tables(tables: list[EvidenceTable], weights: dict[str, float], k: int) -> list[list[str]]:
    return [[tag for tag, _ in table.ranked(weights, k)] for table in tables]


def test_weights_follow_the_evidence_that_finds_the_true_hashtags() -> None:
    # the neighbours prefer a wrong hashtag; the user's history names the right one
    tables = [
        _table({"wrong": {"neighbours": 0.6}, f"right{i}": {"neighbours": 0.4, "history": 1.0}})
        for i in range(4)
    ]
    truth = [{f"right{i}"} for i in range(4)]
    assert [r[0] for r in rank_tables(tables, {"neighbours": 1.0}, 1)] == ["wrong"] * 4
    weights, f1 = select_weights(tables, truth, k=1)
    assert weights["neighbours"] == 1.0 and weights["history"] > 0
    assert f1 == pytest.approx(1.0)
    assert [r[0] for r in rank_tables(tables, weights, 1)] == [f"right{i}" for i in range(4)]


def test_known_posts_count_each_revealed_post_once() -> None:
    known = KnownPosts(np.eye(3, 2, dtype=np.float32), [])
    known.reveal(0, "u", ["a", "b"])
    known.reveal(0, "u", ["a", "b"])
    row = known.add(np.ones(2, dtype=np.float32), [], "v", ["a"])
    assert row == 3 and len(known) == 4
    assert known.known[: len(known)].tolist() == [True, False, False, True]
    assert not known.known[len(known) :].any()  # room for more, unknown
    assert known.uses == {"a": 2, "b": 1} and known.by_user == {"u": [0], "v": [3]}
    ids = np.array([known.tag_ids["b"], -1, known.tag_ids["a"]])
    assert known.uses_of(ids).tolist() == [1.0, 0.0, 2.0]  # -1: no known post carries it


def test_evidence_values_on_a_handmade_set_of_known_posts() -> None:
    fused = np.array([[1, 0], [0.8, 0.6], [0, 1], [-1, 0]], dtype=np.float32)
    known = KnownPosts(fused, [])
    for row, (user, tags) in enumerate(
        [("ann", ["sea"]), ("ann", ["sea", "sun"]), ("bob", ["cat"]), ("cyd", ["sun"])]
    ):
        known.reveal(row, user, tags)
    query = Query(np.array([1, 0], np.float32), [], "ann", {"sea": 0.5}, linked=["bob", "cyd"])
    settings = EvidenceSettings(neighbours=2, temperature=0.0, popular_candidates=1)
    table = gather_evidence(known, [query], settings)[0]
    values = {
        t: dict(zip(EVIDENCE, row, strict=True))
        for t, row in zip(table.hashtags, table.values, strict=True)
    }
    assert set(values) == {"sea", "sun", "cat"}
    # the two nearest posts (rows 0 and 1) weigh alike at temperature 0: sea on both, sun on one
    assert values["sea"]["neighbours"] == pytest.approx(1.0)
    assert values["sun"]["neighbours"] == pytest.approx(0.5)
    assert values["sea"]["history"] == 1.0 and values["sun"]["history"] == 0.5
    assert values["sea"]["model"] == 0.5 and values["sun"]["model"] == 0.0
    # bob and cyd have one known post each: cat on one, sun on the other
    assert values["cat"]["linked_users"] == 0.5 and values["sun"]["linked_users"] == 0.5
    assert values["sea"]["popularity"] == 1.0  # the most used: log(1 + 2) / log(1 + 2)
    assert values["cat"]["content"] == 0.0  # no content modality at all


def test_shares_of_weight_follow_the_rows_hashtags() -> None:
    rng = np.random.default_rng(2)
    tags = [f"t{i}" for i in range(12)]
    known = KnownPosts(np.ones((40, 2), np.float32), [])
    carried = {}
    for row in rng.permutation(40)[:30].tolist():  # revealed out of order, some never
        carried[row] = rng.choice(tags, size=int(rng.integers(0, 4)), replace=False).tolist()
        known.reveal(row, f"u{row % 3}", carried[row])
    rows = np.array(sorted(carried)[:12])
    weights = rng.random(len(rows)).astype(np.float32)
    expected: dict[str, float] = {}
    for row, weight in zip(rows.tolist(), (weights / weights.sum()).tolist(), strict=True):
        for tag in carried[row]:
            expected[tag] = expected.get(tag, 0.0) + weight
    shares = known.shares(rows, weights)
    assert {known.tag_names[i]: v for i, v in zip(shares.ids, shares.values, strict=True)} == (
        pytest.approx(expected)
    )
    ids = np.array([known.tag_ids.get(t, -1) for t in [*tags, "nowhere"]])
    assert shares.of(ids).tolist() == pytest.approx([expected.get(t, 0.0) for t in tags] + [0])
    assert len(known.shares(rows, np.zeros(len(rows), np.float32)).ids) == 0  # no weight


def test_a_tables_top_is_the_full_order_by_score_then_hashtag() -> None:
    rng = np.random.default_rng(1)
    for size in (0, 1, 7, 60):
        tags = [f"t{i:02d}" for i in rng.permutation(size)]
        scores = rng.integers(0, 4, size).astype(float)  # many ties, across the cut too
        table = EvidenceTable(tags, np.zeros((size, len(EVIDENCE))))
        full = sorted(zip(tags, scores.tolist(), strict=True), key=lambda x: (-x[1], x[0]))
        for k in (0, 1, 3, 10, 100):
            assert table.top(scores, k) == full[:k]


def test_an_evidence_column_is_each_candidates_value_however_many_values() -> None:
    candidates = ["c", "a", "d", "b"]
    position = dict(zip(candidates, range(len(candidates)), strict=True))
    for values in (
        {"a": 0.5},  # fewer values than candidates: placed by position
        Counter({"b": 2, "z": 7}),  # one that is no candidate
        {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4, "e": 0.5},  # more values: read per candidate
        {},
    ):
        assert _column(values, position).tolist() == [values.get(t, 0.0) for t in candidates]


def test_linked_users_history_is_their_counters_added_up_in_turn() -> None:
    # many ties: the best must follow Counter.most_common over the users' histories in turn
    rng = np.random.default_rng(0)
    users = [f"u{i}" for i in range(6)]
    tags = [f"t{i}" for i in range(30)]
    known = KnownPosts(np.zeros((0, 2), np.float32), [])

    def post(user: str) -> None:
        chosen = rng.choice(tags, size=int(rng.integers(1, 4)), replace=False).tolist()
        known.add(None, [], user, chosen)

    for _ in range(120):
        post(str(rng.choice(users)))
    for group in (["u3", "u0", "u5"], ["u1"], ["u2", "u4", "nobody"], []):
        for best in (0, 1, 5, 40):
            merged: Counter[str] = Counter()
            for user in group:
                merged.update(known.history.get(user, {}))
            found = known.linked_history(group, best)
            assert found.best == [t for t, _ in merged.most_common(best)]
            ids = np.array([known.tag_ids.get(t, -1) for t in [*tags, "unseen"]])
            assert found.counts(ids).tolist() == [merged.get(t, 0) for t in [*tags, "unseen"]]
            assert found.posts == sum(len(known.by_user.get(u, [])) for u in group)
        post("u3")  # a new post of a linked user counts at the next query
        assert known.linked_history(["u3"], 3).posts == len(known.by_user["u3"])


def test_the_sound_evidence_counts_every_known_post_with_the_sound_of_any_user() -> None:
    fused = np.array([[1, 0], [1, 0], [0.6, 0.8], [0, 1], [1, 0]], dtype=np.float32)
    known = KnownPosts(fused, [])
    for row, (user, tags, sound) in enumerate(
        [
            ("ann", ["dance"], "hit@"),
            ("bob", ["dance", "fun"], "hit@"),
            ("cyd", ["fun"], "hit@"),
            ("dan", ["cat"], "purr"),
            ("eve", ["sea"], None),
        ]
    ):
        known.reveal(row, user, tags, sound)
    assert known.sound_posts == {"hit@": 3, "purr": 1}
    # a new user's post with the sound: far from every post that carries it in the model's
    # space, and no other evidence names "dance" (neighbours 1, no popularity candidates)
    query = Query(np.array([0, 1], np.float32), [], "zed", {}, sound="hit@")
    settings = EvidenceSettings(neighbours=1, popular_candidates=0, sound_candidates=1)
    table = gather_evidence(known, [query], settings)[0]
    values = {
        t: dict(zip(EVIDENCE, row, strict=True))
        for t, row in zip(table.hashtags, table.values, strict=True)
    }
    assert "dance" in values  # the sound's most carried hashtag is a candidate
    assert values["dance"]["sound"] == pytest.approx(2 / 3)  # 2 of the 3 posts with it
    assert values["dance"]["neighbours"] == 0.0 and values["dance"]["history"] == 0.0
    assert values["cat"]["sound"] == 0.0  # the nearest post's: another sound
    silent = Query(np.array([0, 1], np.float32), [], "zed", {})
    for row in gather_evidence(known, [silent], settings)[0].values:
        assert row[EVIDENCE.index("sound")] == 0.0


def test_a_hashtag_born_after_training_reaches_a_similar_post_of_another_user(
    trained: tuple,
) -> None:
    network, inputs, data = trained
    settings = EvidenceSettings(neighbours=20)
    live = LiveMishon(network, inputs, weights={"neighbours": 1.0}, settings=settings).fit(data)
    users = data.posts["user_id"].astype(str).to_numpy()
    fused = live.known_.fused
    unseen = [int(p) for p in data.cases("test")]
    # the most similar pair of test posts of two users
    query, nearest = max(
        ((q, o) for q in unseen for o in unseen if users[o] != users[q]),
        key=lambda pair: float(fused[pair[0]] @ fused[pair[1]]),
    )
    assert "brandnew" not in live.vocabulary
    assert "brandnew" not in live.recommend(np.array([query]), 10)[0]
    posts = data.posts.copy()
    posts.at[nearest, "hashtags"] = ["brandnew"]
    altered = SplitData(data.dataset, data.split_name, posts, data.rows, data.all_post_ids)
    live = LiveMishon(network, inputs, weights={"neighbours": 1.0}, settings=settings)
    live.fit(altered).observe(np.array([nearest]))
    assert "brandnew" in live.vocabulary
    assert "brandnew" in live.recommend(np.array([query]), 10)[0]


def test_live_never_sees_its_own_or_later_hashtags(trained: tuple) -> None:
    network, inputs, data = trained
    cases = data.cases("test")
    order = stream_order(data, cases).tolist()
    before = rank_under(LiveMishon(network, inputs).fit(data), data, "test", "stream", 10)
    changed = order[len(order) // 2]
    posts = data.posts.copy()
    posts.at[changed, "hashtags"] = ["topic0", "topic1", "leak"]
    altered = SplitData(data.dataset, data.split_name, posts, data.rows, data.all_post_ids)
    live = LiveMishon(network, inputs).fit(altered)
    live.recorded_ = {}
    after = rank_under(live, altered, "test", "stream", 10)
    position = {p: i for i, p in enumerate(cases.tolist())}
    for earlier in order[: order.index(changed) + 1]:
        assert after[position[earlier]] == before[position[earlier]]
        assert "leak" not in live.recorded_[earlier][0].hashtags
    # once revealed, the hashtag is evidence for later posts (a neighbour's hashtag)
    later = order[order.index(changed) + 1 :]
    assert any("leak" in live.recorded_[p][0].hashtags for p in later)


def test_weights_are_selected_on_validation_posts_only(trained: tuple) -> None:
    network, inputs, data = trained
    live = LiveMishon(network, inputs, refresh_every=1000)
    selection = select_live_weights(live, data, "stream")
    score = selection.reached
    # too few validation posts for weights per kind of user: one set for all
    assert set(score) == {"all"} and 0.0 < score["all"] <= 1.0
    assert set(live.weights.known_user) == set(EVIDENCE)
    assert live.weights.new_user == live.weights.known_user
    selected = live.weights
    posts = data.posts.copy()
    for position in data.cases("test"):
        posts.at[position, "hashtags"] = ["noise"]
    altered = SplitData(data.dataset, data.split_name, posts, data.rows, data.all_post_ids)
    other = LiveMishon(network, inputs, refresh_every=1000)
    assert select_live_weights(other, altered, "stream") == selection  # second stage too
    assert other.weights == selected
    # the recommender starts again from the training posts after selecting
    assert not other.known_.known[data.cases("valid")].any()


def test_known_past_selection_ranks_each_validation_half_knowing_the_other(
    trained: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mishon.evaluate import live as selection

    network, inputs, data = trained
    valid = data.cases("valid")
    seen: list[set[int]] = []  # the validation posts made known before each ranking
    real = selection._cross_fitted

    def spy(live: LiveMishon, data: SplitData, cases: np.ndarray, k: int) -> list:
        original_observe = live.observe

        def observe(positions: np.ndarray, **options: object) -> None:
            if options.get("encode", True):  # not fit's training posts
                seen.append(set(positions.tolist()))
            original_observe(positions, **options)

        live.observe = observe  # type: ignore[method-assign]
        return real(live, data, cases, k)

    monkeypatch.setattr(selection, "_cross_fitted", spy)
    live = LiveMishon(network, inputs, refresh_every=1000)
    selection = select_live_weights(live, data, "known-past")
    assert 0.0 < selection.reached["all"] <= 1.0
    halves = seen
    assert halves == [set(valid[1::2].tolist()), set(valid[0::2].tolist())]
    assert not halves[0] & halves[1] and halves[0] | halves[1] == set(valid.tolist())
    posts = data.posts.copy()  # and it reads no test hashtag
    for position in data.cases("test"):
        posts.at[position, "hashtags"] = ["noise"]
    altered = SplitData(data.dataset, data.split_name, posts, data.rows, data.all_post_ids)
    other = LiveMishon(network, inputs, refresh_every=1000)
    assert select_live_weights(other, altered, "known-past") == selection


def test_users_without_known_posts_get_weights_of_their_own(
    trained: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    network, inputs, data = trained
    posts = data.posts.copy()
    valid = data.cases("valid")
    newcomers = valid[: len(valid) // 2]
    for position in newcomers:  # posts of users nobody has seen before
        posts.at[position, "user_id"] = f"newcomer{position}"
    mixed = SplitData(data.dataset, data.split_name, posts, data.rows, data.all_post_ids)
    monkeypatch.setattr("mishon.evaluate.live.MIN_GROUP_POSTS", 1)
    live = LiveMishon(network, inputs)
    reached = select_live_weights(live, mixed, "known-past").reached
    assert set(reached) == {"known_user", "new_user"}
    # each kind of post is ranked with its own weights
    fixed = LiveWeights({"neighbours": 1.0}, {"popularity": 1.0})
    ranker = LiveMishon(network, inputs, weights=fixed).fit(mixed)
    popular = ranker.known_.popular(3)
    assert ranker.recommend(np.array([newcomers[0]]), 3)[0] == popular
    warm = valid[len(valid) // 2 :]
    assert any(ranker.recommend(np.array([p]), 3)[0] != popular for p in warm)


def test_without_validation_posts_the_default_weights_stay(trained: tuple) -> None:
    network, inputs, data = trained
    posts = data.posts.copy()
    for position in data.cases("valid"):  # no labelled validation post left
        posts.at[position, "hashtags"] = []
    unlabelled = SplitData(data.dataset, data.split_name, posts, data.rows, data.all_post_ids)
    live = LiveMishon(network, inputs)
    selection = select_live_weights(live, unlabelled, "stream")
    assert selection.reached == {} and selection.second_stage == {}
    assert live.weights == LiveWeights.of(DEFAULT_WEIGHTS) and live.ranker is None


def test_evaluate_run_reports_mishon_live_beside_the_network(tmp_path: Path) -> None:
    import json

    from mishon.evaluate.evaluation import evaluate_run

    dataset = planted_dataset(tmp_path / "ds")
    train_model(dataset, small_settings(epochs=5), tmp_path / "run")
    evaluation = evaluate_run(tmp_path / "run", baselines="history", protocol="known-past")
    names = [r["recommender"] for r in evaluation.results]
    assert names == ["MISHON", "MISHON live", "user history"]
    live = evaluation.results[1]
    assert set(live["weights"]) == {"known_user", "new_user"}
    assert set(live["weights"]["known_user"]) == set(EVIDENCE) and live["protocol"] == "known-past"
    assert set(evaluation.relative_f1_at_5 or {}) == {"MISHON", "MISHON live"}
    ratio = evaluation.relative_f1_at_5["MISHON live"]["all"]
    assert ratio == pytest.approx(live["all"]["F1@5"] / evaluation.results[2]["all"]["F1@5"])
    saved = json.loads((tmp_path / "run" / "evaluation-test-known-past.json").read_text())
    assert saved["results"][1]["weights"] == live["weights"]
    without = evaluate_run(tmp_path / "run", protocol="known-past", live=False)
    assert [r["recommender"] for r in without.results] == ["MISHON"]


def test_an_evaluation_without_live_never_replaces_the_one_with_its_weights(
    tmp_path: Path,
) -> None:
    from mishon.evaluate.evaluation import selected_ranking

    dataset = planted_dataset(tmp_path / "ds")
    run = tmp_path / "run"
    train_model(dataset, small_settings(epochs=3), run)
    evaluate_run(run, protocol="stream", refresh_every=64)
    full = (run / "evaluation-test-stream.json").read_text()
    evaluate_run(run, protocol="stream", refresh_every=64, live=False)
    assert (run / "evaluation-test-stream.json").read_text() == full
    reduced = json.loads((run / "evaluation-test-stream-nolive.json").read_text())
    assert [r["recommender"] for r in reduced["results"]] == ["MISHON"]
    loaded = load_run(run)
    chosen = selected_ranking(run, loaded)
    assert chosen.weights is not None and chosen.source.startswith(("weights selected", "learned"))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (float("nan"), "weights.known_user.model: nan is not >= 0"),
        ("1", "weights.known_user.model: '1' is not a number"),
        ([1], "weights.known_user.model: [1] is not a number"),
        (-1, "weights.known_user.model: -1 is not >= 0"),
        (None, "weights.known_user.model: None is not a number"),
    ],
)
def test_stored_weights_are_checked_where_they_are_read(value: object, message: str) -> None:
    good = {name: 1.0 for name in EVIDENCE}
    with pytest.raises(MishonError, match=re.escape(f"FILE: {message}")):
        LiveWeights.read({"known_user": {**good, "model": value}, "new_user": good}, "FILE")
    with pytest.raises(MishonError, match=r"weights\.new_user: every weight is 0"):
        LiveWeights.read({"known_user": good, "new_user": {}}, "FILE")
    with pytest.raises(MishonError, match=r"weights\.new_user\.bogus: unknown evidence"):
        LiveWeights.read({"known_user": good, "new_user": {"bogus": 1}}, "FILE")
    assert LiveWeights.read({"known_user": good, "new_user": good}, "FILE").known_user == good


def test_an_evidence_ablation_selects_among_the_named_evidence_only(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mishon.cli import app

    dataset = planted_dataset(tmp_path / "ds")
    train_model(dataset, small_settings(epochs=3), tmp_path / "run")
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", str(tmp_path / "run"), "--evidence", "model,content"])
    assert result.exit_code == 0, result.output
    assert "MISHON live: ranked by the " in result.output  # which second stage, and its folds
    saved = tmp_path / "run" / "evaluation-test-live-model+content.json"
    assert saved.is_file() and not (tmp_path / "run" / "evaluation-test.json").exists()
    import json

    live = json.loads(saved.read_text())["results"][1]
    assert live["evidence"] == ["model", "content"]
    assert live["second_stage"]["chosen"] == "search"  # trees would read the other evidence
    for weights in live["weights"].values():
        assert {n for n, w in weights.items() if w} <= {"model", "content"}
    listed = runner.invoke(app, ["evaluate", "--help"]).output.replace("\n", "").replace(" ", "")
    assert all(name in listed for name in EVIDENCE)
    bad = runner.invoke(app, ["evaluate", str(tmp_path / "run"), "--evidence", "model,magic"])
    assert bad.exit_code == 1 and "unknown evidence ['magic']" in bad.output
