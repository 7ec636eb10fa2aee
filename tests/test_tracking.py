"""Experiment tracking: what a run logs to TensorBoard and MLflow, read back."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mishon.evaluate.evaluation import evaluate_run
from mishon.train.run import load_run, train_model

from .planted import planted_dataset, small_settings


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return planted_dataset(tmp_path_factory.mktemp("tracking") / "ds")


def test_tensorboard_gets_the_settings_the_epochs_and_the_evaluation(
    planted: Path, tmp_path: Path
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    settings = small_settings(epochs=4)
    settings.train.tracking = "tensorboard"
    run = tmp_path / "run"
    train_model(planted, settings, run)
    evaluation = evaluate_run(run, baselines="popularity")
    events = EventAccumulator(str(run / "tracking" / "tensorboard"))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4]
    assert "valid/F1@5" in scalars
    assert "test-static/MISHON_live/all/F1@5" in scalars
    figure = events.Scalars("test-static/popularity/all/F1@5")[0].value
    popularity = next(r for r in evaluation.results if r["recommender"] == "popularity")
    assert figure == pytest.approx(popularity["all"]["F1@5"])
    assert {"settings/text_summary", "fingerprint/text_summary"} <= set(events.Tags()["tensors"])


def test_mlflow_keeps_one_run_through_resume_and_evaluation(planted: Path, tmp_path: Path) -> None:
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    settings = small_settings(epochs=3, patience=100)
    settings.train.tracking = "mlflow"
    run = tmp_path / "run"
    train_model(planted, settings, run)
    settings.train.epochs = 5
    train_model(planted, settings, run, resume=True)
    evaluation = evaluate_run(run)
    client = MlflowClient((run / "tracking" / "mlruns").resolve().as_uri())
    run_id = (run / "tracking" / "mlflow-run.txt").read_text().strip()
    logged = client.get_run(run_id)
    assert logged.data.params["model.hidden"] == str(settings.model.hidden)
    assert logged.data.params["train.tracking"] == "mlflow"
    assert logged.data.tags["fingerprint"] == load_run(run).fingerprint
    losses = client.get_metric_history(run_id, "train/loss")
    assert sorted(m.step for m in losses) == [1, 2, 3, 4, 5]  # one run, resumed
    live = next(r for r in evaluation.results if r["recommender"] == "MISHON live")
    key = "test-static/MISHON_live/all/F1_at_5"
    assert logged.data.metrics[key] == pytest.approx(live["all"]["F1@5"])
    artifacts = [a.path for a in client.list_artifacts(run_id)]
    assert "evaluation-test.json" in artifacts
    assert len(client.search_runs([logged.info.experiment_id])) == 1
