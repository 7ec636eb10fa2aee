"""Experiment tracking: a run's settings, per-epoch figures and evaluations in TensorBoard or
MLflow (`train.tracking`), beside the run's own `history.csv` and JSON files.

Both write inside the run directory unless told otherwise (`train.tracking_uri`):
- tensorboard: event files in RUN/tracking/tensorboard (`tensorboard --logdir runs/` compares
  every run below `runs/`): the settings and the run's fingerprint as text, `train/loss` and
  `valid/F1@5`, `valid/recall`, `valid/NDCG` per epoch, each evaluation's F1@K per recommender
  and subset as `test-PROTOCOL/RECOMMENDER/SUBSET/F1@K`;
- mlflow: MLflow's file store in RUN/tracking/mlruns (no server: `mlflow ui --backend-store-uri
  RUN/tracking/mlruns`, or give several runs one `tracking_uri`): the settings as flattened
  parameters, the fingerprint as a tag, the same metrics, and each evaluation JSON as an
  artifact. The MLflow run id is kept in RUN/tracking/mlflow-run.txt, so a resumed training
  and later evaluations log into the same MLflow run.

Needs the `tracking` extra (`pip install mishon[tracking]`); a missing package is a clear
error at the start of training, not after it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

from mishon.errors import MishonError

TRACKING_DIR = "tracking"
MLFLOW_RUN_FILE = "mlflow-run.txt"
EXPERIMENT = "mishon"


class Tracker(Protocol):
    """Where a run's figures go besides its own files."""

    def epoch(self, row: dict[str, Any]) -> None:
        """One epoch's figures (history.csv's row)."""

    def evaluation(self, evaluation: dict[str, Any], path: Path) -> None:
        """A saved evaluation (its JSON as written to `path`)."""

    def close(self) -> None: ...


class NoTracker:
    """`train.tracking: none`."""

    def epoch(self, row: dict[str, Any]) -> None:
        pass

    def evaluation(self, evaluation: dict[str, Any], path: Path) -> None:
        pass

    def close(self) -> None:
        pass


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= _flatten(value, f"{name}.")
        else:
            flat[name] = value
    return flat


def _epoch_metrics(row: dict[str, Any]) -> dict[str, float]:
    names = {"loss": "train/loss", "valid_f1": "valid/F1@5", "valid_recall": "valid/recall",
             "valid_ndcg": "valid/NDCG", "seconds": "train/seconds"}  # fmt: skip
    return {names[k]: float(v) for k, v in row.items() if k in names and v is not None}


def _evaluation_metrics(evaluation: dict[str, Any]) -> dict[str, float]:
    prefix = f"{evaluation['part']}-{evaluation.get('protocol', 'static')}"
    metrics = {}
    for result in evaluation["results"]:
        for subset in ("all", "warm", "cold"):
            for k in (1, 3, 5, 10):
                value = result.get(subset, {}).get(f"F1@{k}")
                if value is not None:
                    metrics[f"{prefix}/{result['recommender']}/{subset}/F1@{k}"] = float(value)
    return metrics


class TensorBoardTracker:
    def __init__(self, folder: Path, settings: dict[str, Any], fingerprint: str) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise MishonError(
                f"train.tracking=tensorboard needs tensorboard ({exc}): pip install "
                "'mishon[tracking]'"
            ) from None
        self.writer = SummaryWriter(log_dir=str(folder))
        self.writer.add_text("settings", f"```\n{json.dumps(settings, indent=2)}\n```")
        self.writer.add_text("fingerprint", fingerprint)

    def epoch(self, row: dict[str, Any]) -> None:
        for name, value in _epoch_metrics(row).items():
            self.writer.add_scalar(name, value, row["epoch"])
        self.writer.flush()

    def evaluation(self, evaluation: dict[str, Any], path: Path) -> None:
        for name, value in _evaluation_metrics(evaluation).items():
            self.writer.add_scalar(name.replace(" ", "_"), value, 0)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class MLflowTracker:
    def __init__(
        self, uri: str, run: Path, settings: dict[str, Any], fingerprint: str, resume: bool
    ) -> None:
        # MLflow 3 keeps the file store (no server, no database) behind this switch
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        try:
            import mlflow
        except ImportError as exc:
            raise MishonError(
                f"train.tracking=mlflow needs mlflow ({exc}): pip install 'mishon[tracking]'"
            ) from None
        self.client = mlflow.tracking.MlflowClient(uri)
        id_file = run / TRACKING_DIR / MLFLOW_RUN_FILE
        if resume and id_file.is_file():
            self.run_id = id_file.read_text("utf-8").strip()
        else:
            experiment = self.client.get_experiment_by_name(EXPERIMENT)
            experiment_id = (
                experiment.experiment_id
                if experiment is not None
                else self.client.create_experiment(EXPERIMENT)
            )
            created = self.client.create_run(experiment_id, run_name=run.resolve().name)
            self.run_id = created.info.run_id
            id_file.parent.mkdir(parents=True, exist_ok=True)
            id_file.write_text(self.run_id + "\n", "utf-8")
            for name, value in _flatten(settings).items():
                self.client.log_param(self.run_id, name, str(value)[:500])
        self.client.set_tag(self.run_id, "fingerprint", fingerprint)

    def epoch(self, row: dict[str, Any]) -> None:
        for name, value in _epoch_metrics(row).items():
            self.client.log_metric(self.run_id, name.replace("@", "_at_"), value, step=row["epoch"])

    def evaluation(self, evaluation: dict[str, Any], path: Path) -> None:
        for name, value in _evaluation_metrics(evaluation).items():
            key = name.replace("@", "_at_").replace(" ", "_").replace("+", "_")
            self.client.log_metric(self.run_id, key, value)
        self.client.log_artifact(self.run_id, str(path))

    def close(self) -> None:
        pass


def open_tracker(
    kind: str,
    run: Path,
    settings: dict[str, Any],
    fingerprint: str,
    uri: str | None = None,
    resume: bool = False,
) -> Tracker:
    """The tracker `kind` (none, tensorboard, mlflow) of the run directory `run`."""
    if kind == "none":
        return NoTracker()
    if kind == "tensorboard":
        return TensorBoardTracker(Path(uri) if uri else run / TRACKING_DIR / "tensorboard",
                                  settings, fingerprint)  # fmt: skip
    if kind == "mlflow":
        target = uri or (run / TRACKING_DIR / "mlruns").resolve().as_uri()
        return MLflowTracker(target, run, settings, fingerprint, resume)
    raise MishonError(f"train.tracking must be none, tensorboard or mlflow, not {kind!r}")
