"""Bootstrap intervals: how sure an F1@5 and a ratio to the best baseline are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mishon.evaluate.uncertainty import f1_interval, ratio_interval
from mishon.metrics import f1_from_hits


def _posts(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 6, count)
    return np.minimum(rng.integers(0, 4, count), sizes), sizes


def test_the_f1_interval_holds_the_figure_and_narrows_with_more_posts() -> None:
    found, sizes = _posts(200)
    low, high = f1_interval(found, sizes)
    assert low < f1_from_hits(found, sizes, 5) < high
    more_found, more_sizes = _posts(5000)
    more_low, more_high = f1_interval(more_found, more_sizes)
    assert more_high - more_low < (high - low) / 3
    assert f1_interval(found, sizes) == [low, high]  # seeded: the same posts, the same interval
    assert f1_interval(np.zeros(0), np.zeros(0)) is None


def test_the_paired_ratio_interval_sees_a_consistent_difference_and_no_false_one() -> None:
    found, sizes = _posts(300)
    assert ratio_interval(found, found, sizes) == [1.0, 1.0]
    better = np.minimum(found + 1, sizes)  # one more hit on every post that has room
    low, high = ratio_interval(better, found, sizes)
    assert 1.0 < low < high
    assert ratio_interval(found, np.zeros_like(found), sizes) is None  # nothing to divide by


def test_an_evaluation_reports_intervals_and_what_the_ratio_means(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from mishon.cli import app
    from mishon.train.run import train_model

    from .planted import planted_dataset, small_settings

    dataset = planted_dataset(tmp_path / "ds")
    train_model(dataset, small_settings(epochs=3), tmp_path / "run")
    result = CliRunner().invoke(
        app, ["evaluate", str(tmp_path / "run"), "--baselines", "popularity,history"]
    )
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "run" / "evaluation-test.json").read_text())
    for row in saved["results"]:
        low, high = row["F1@5 95%"]["all"]  # rounded to 4 places
        assert low - 1e-4 <= row["all"]["F1@5"] <= high + 1e-4
        assert len(row["hits@5"]) == row["cases"]["all"]
    ratio = saved["relative_f1_at_5"]["MISHON live"]["all"]
    low, high = saved["relative_f1_at_5_95"]["MISHON live"]["all"]
    assert low - 1e-4 <= ratio <= high + 1e-4
    assert saved["best_baseline"]["all"] in ("popularity", "user history")
    assert "95% interval" in result.output and "F1@5 95%" in result.output
    assert "How to read this" in result.output
    assert any(verdict in result.output for verdict in ("better", "worse", "no clear difference"))
    assert ratio == pytest.approx(
        saved["results"][1]["all"]["F1@5"] / max(r["all"]["F1@5"] for r in saved["results"][2:])
    )
