"""MISHON live's second stage: a learned ranker over the evidence, chosen on validation folds."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from mishon.config import EvidenceSettings, SecondStageSettings
from mishon.errors import MishonError
from mishon.evaluate.live import choose_second_stage, user_folds
from mishon.recommenders.evidence import EVIDENCE, EvidenceTable
from mishon.recommenders.second_stage import FEATURES, LearnedRanker

USE = EVIDENCE


def _xor_posts(count: int, seed: int = 0) -> tuple[list[EvidenceTable], list[set[str]]]:
    """Posts whose true hashtags have exactly one of two evidences high: no non-negative
    weighted sum puts both on top (the candidate with both is always above one of them)."""
    rng = np.random.default_rng(seed)
    a, b = EVIDENCE.index("neighbours"), EVIDENCE.index("history")
    tables, truth = [], []
    for post in range(count):
        tags = [f"both{post}", f"first{post}", f"second{post}", f"none{post}"]
        values = rng.uniform(0.0, 0.05, size=(4, len(EVIDENCE)))
        for row, (x, y) in enumerate([(1, 1), (1, 0), (0, 1), (0, 0)]):
            values[row, a] += 0.8 * x
            values[row, b] += 0.8 * y
        order = rng.permutation(4)
        tables.append(EvidenceTable([tags[i] for i in order], values[order]))
        truth.append({f"first{post}", f"second{post}"})
    return tables, truth


def test_the_learned_ranker_finds_what_no_weighted_sum_can_and_keeps_to_its_format(
    tmp_path: Path,
) -> None:
    tables, truth = _xor_posts(200)
    ranker = LearnedRanker.fit(tables, [True] * 200, truth, SecondStageSettings(trees=50))
    test, test_truth = _xor_posts(20, seed=1)
    for table, true in zip(test, test_truth, strict=True):
        assert {tag for tag, _ in table.top(ranker.scores(table, True), 2)} == true
    # saved as text, read back the same, refused when changed or of other features
    path = tmp_path / "ranker.txt"
    digest = ranker.save(path)
    again = LearnedRanker.load(path, digest, "mishon evaluate RUN --protocol stream")
    np.testing.assert_allclose(again.scores(test[0], True), ranker.scores(test[0], True))
    with pytest.raises(MishonError, match=re.escape(f"{path} is not the ranker its evaluation")):
        LearnedRanker.load(path, "0" * 64, "mishon evaluate RUN")
    with pytest.raises(MishonError, match="is missing: rerun `mishon evaluate RUN`"):
        LearnedRanker.load(tmp_path / "gone.txt", digest, "mishon evaluate RUN")
    other = path.read_text().replace("user_has_known_posts", "something_else")
    with pytest.raises(MishonError, match=r"FILE: the ranker reads .*something_else"):
        LearnedRanker.from_text(other, "FILE")
    with pytest.raises(MishonError, match="FILE: not a LightGBM model"):
        LearnedRanker.from_text("tree\nnonsense=1\n", "FILE")
    assert len(FEATURES) == len(EVIDENCE) + 1


def test_nothing_to_learn_is_a_clear_error() -> None:
    tables, _ = _xor_posts(5)
    with pytest.raises(MishonError, match="no candidate of these posts is a true hashtag"):
        LearnedRanker.fit(tables, [True] * 5, [set()] * 5)


def test_auto_keeps_the_learned_ranker_only_where_it_wins_every_fold() -> None:
    tables, truth = _xor_posts(240)
    users = np.array([f"user{i % 40}" for i in range(240)])
    has = [True] * 240
    settings = SecondStageSettings(trees=50)
    ranker, record = choose_second_stage(tables, has, truth, users, USE, settings, k=2)
    assert record["chosen"] == "learned" and ranker is not None
    search, learned = record["folds_f1_at_5"]["search"], record["folds_f1_at_5"]["learned"]
    assert len(search) == len(learned) == 2
    assert all(lr > s for lr, s in zip(learned, search, strict=True))
    # trees that cannot split score every candidate alike: the search wins, auto keeps it
    stump = SecondStageSettings(trees=5, min_child_samples=100_000)
    ranker, record = choose_second_stage(tables, has, truth, users, USE, stump, k=2)
    assert record["chosen"] == "search" and ranker is None
    # the modes that do not choose
    forced = SecondStageSettings(mode="learned", trees=5, min_child_samples=100_000)
    ranker, record = choose_second_stage(tables, has, truth, users, USE, forced, k=2)
    assert record["chosen"] == "learned" and ranker is not None
    ranker, record = choose_second_stage(
        tables, has, truth, users, USE, SecondStageSettings(mode="search"), k=2
    )
    assert record == {"mode": "search", "chosen": "search"} and ranker is None
    # one user only: nothing to compare, the search stays
    ranker, record = choose_second_stage(
        tables, has, truth, np.array(["one"] * 240), USE, settings, k=2
    )
    assert record["chosen"] == "search" and "one fold" in record["note"]


def test_folds_keep_each_users_posts_together() -> None:
    users = np.array(["a", "b", "a", "c", "b", "a"])
    fold = user_folds(users, 2)
    for user in set(users.tolist()):
        assert len(set(fold[users == user].tolist())) == 1
    assert fold.tolist() == user_folds(users, 2).tolist()  # stable across calls


def test_an_evaluation_keeps_the_ranker_it_chose_and_the_service_ranks_with_it(
    tmp_path: Path, tiny_run: Path
) -> None:
    import shutil

    from mishon.evaluate.evaluation import evaluate_run, selected_ranking
    from mishon.train.run import load_run

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    learned = EvidenceSettings(second_stage=SecondStageSettings(mode="learned", trees=20))
    evaluate_run(run, protocol="stream", refresh_every=0, evidence_settings=learned)
    saved = json.loads((run / "evaluation-test-stream.json").read_text())
    stage = saved["results"][1]["second_stage"]
    assert stage["chosen"] == "learned" and stage["file"] == "evaluation-test-stream.ranker.txt"
    assert (run / stage["file"]).is_file()
    chosen = selected_ranking(run, load_run(run))
    assert chosen.ranker is not None and chosen.source.startswith("learned ranker")
    (run / stage["file"]).write_text((run / stage["file"]).read_text() + "\n")
    with pytest.raises(MishonError, match="is not the ranker its evaluation chose: rerun"):
        selected_ranking(run, load_run(run))
    # the search chosen: no ranker file read, the weights rank
    searched = EvidenceSettings(second_stage=SecondStageSettings(mode="search"))
    evaluate_run(run, protocol="stream", refresh_every=0, evidence_settings=searched)
    chosen = selected_ranking(run, load_run(run))
    assert chosen.ranker is None and chosen.weights is not None


def test_the_learned_ranker_does_not_depend_on_the_order_of_the_candidates() -> None:
    tables, truth = _xor_posts(150)
    rng = np.random.default_rng(3)
    shuffled = []
    for table in tables:
        order = rng.permutation(len(table.hashtags))
        shuffled.append(EvidenceTable([table.hashtags[i] for i in order], table.values[order]))
    settings = SecondStageSettings(trees=30)
    first = LearnedRanker.fit(tables, [True] * 150, truth, settings)
    second = LearnedRanker.fit(shuffled, [True] * 150, truth, settings)
    assert first.to_text() == second.to_text()
