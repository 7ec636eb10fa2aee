from __future__ import annotations

import math

import pytest

from mishon.metrics import ranking_metrics, vocabulary_coverage


def test_hand_computed_metrics() -> None:
    recommended = [["a", "x", "b"], ["x", "y", "z"]]
    truth = [{"a", "b"}, {"c"}]
    m = ranking_metrics(recommended, truth, ks=(1, 3))
    assert m["HR@1"] == 0.5 and m["P@1"] == 0.5 and m["R@1"] == 0.25
    assert m["F1@1"] == pytest.approx(2 * 0.5 * 0.25 / 0.75)
    assert m["NDCG@1"] == 0.5 and m["MAP@1"] == 0.5
    assert m["P@3"] == pytest.approx(1 / 3) and m["R@3"] == 0.5
    assert m["F1@3"] == pytest.approx(0.4)  # harmonic mean of the averages, not mean of F1s
    dcg, ideal = 1 + 1 / math.log2(4), 1 + 1 / math.log2(3)
    assert m["NDCG@3"] == pytest.approx(dcg / ideal / 2)
    assert m["MAP@3"] == pytest.approx((1 + 2 / 3) / 2 / 2)
    assert m["HR@3"] == 0.5


def test_short_lists_and_out_of_vocabulary_truth() -> None:
    m = ranking_metrics([["a"]], [{"a", "never-seen"}], ks=(3,))
    assert m["P@3"] == pytest.approx(1 / 3)
    assert m["R@3"] == 0.5  # the unseen hashtag still counts in |Y|
    assert m["MAP@3"] == 0.5 and m["NDCG@3"] == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert vocabulary_coverage([{"a", "never-seen"}], {"a", "b"}) == 0.5


def test_unlabeled_posts_are_refused() -> None:
    with pytest.raises(ValueError, match="no true hashtag"):
        ranking_metrics([["a"]], [set()])
    assert ranking_metrics([], []) == {}
