"""A run directory: the graph, the settings, the vocabulary, the weights and the history.

runs/NAME/
  run.json           dataset, split, resolved settings, vocabulary size, package versions,
                     lineage (`RunInfo`)
  config.yaml        the resolved settings, reusable as --config
  vocabulary.json    the output layer's hashtags, in order
  graph.json, graph.safetensors     the graph (`mishon graph` writes the same files)
  model.safetensors  best weights;  last.safetensors, optimizer.safetensors,
  rng.safetensors, trainer.json     resumable state;  history.csv  per-epoch figures
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from pydantic import BaseModel, ConfigDict
from safetensors import SafetensorError
from safetensors.torch import load_file

from mishon.config import RunSettings
from mishon.data.schema import POSTS_FILE
from mishon.data.split_data import SplitData, load_split_data
from mishon.data.store import atomic_path, write_json
from mishon.device import resolve_device
from mishon.errors import MishonError
from mishon.features.store import features_fingerprint, package_versions
from mishon.graph.build import HeteroGraph, build_graph, default_split, graph_lineage
from mishon.graph.io import METADATA, load_graph, save_graph
from mishon.lineage import (
    Lineage,
    digest,
    file_digest,
    legacy_settings_digest,
    settings_digest,
)
from mishon.locks import exclusive_writer
from mishon.model.inputs import ModelInputs, Vocabulary, build_inputs
from mishon.model.network import MishonNetwork
from mishon.train import distributed
from mishon.train.tracking import NoTracker, Tracker, open_tracker
from mishon.train.trainer import (
    BEST_WEIGHTS,
    STATE,
    ProgressFn,
    StepFn,
    Trainer,
    TrainState,
    recover_checkpoint,
)

log = logging.getLogger("mishon.train")

RUN_FILE = "run.json"
VOCABULARY = "vocabulary.json"
CONFIG = "config.yaml"
TRAINED_SETTINGS = {"graph", "model"}  # what a run is trained from (resuming may change the rest)
StageFn = Callable[[str], None]


class RunInfo(BaseModel):
    """`run.json`: what a run was trained on and with (read back by `read_run_info`)."""

    model_config = ConfigDict(extra="ignore")

    dataset: str
    split: str
    settings: RunSettings
    vocabulary_size: int
    modalities: list[str]
    versions: dict[str, str] = {}
    lineage: Lineage | None = None  # None: a run made before lineages
    vocabulary_digest: str | None = None  # of vocabulary.json; None: a run made before it


def read_run_info(run: Path) -> RunInfo:
    """The run's run.json, validated; a damaged or foreign one is an error naming the file."""
    path = run / RUN_FILE
    try:
        return RunInfo.model_validate_json(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise MishonError(f"{path} cannot be read as a MISHON run ({exc})") from None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def graph_for(
    data: SplitData,
    settings: RunSettings,
    out: Path | None,
    stage: StageFn,
    notice: StageFn | None = None,
) -> HeteroGraph:
    """The run's graph: the one in `out` while its inputs are unchanged, else a new one.

    The saved graph's lineage (posts, split assignment, features, graph settings, code
    version) is compared with what is on disk now; any difference rebuilds it, with a message
    naming what changed (`notice`, else `stage`).
    """
    if out is not None and (out / METADATA).is_file():
        graph = load_graph(out)
        stale = stale_graph_reasons(graph, data, settings)
        if not stale:
            return graph
        (notice or stage)(f"rebuilding the graph in {out}: {'; '.join(stale)}")
    graph = build_graph(data.dataset, data.split_name, settings.graph, stage=stage)
    if out is not None:
        save_graph(graph, out)
    return graph


def stale_graph_reasons(graph: HeteroGraph, data: SplitData, settings: RunSettings) -> list[str]:
    """Why `graph` is not the graph of `data` with `settings` (empty when it is)."""
    if graph.meta.get("split") != data.split_name:
        return [f"it was built on split {graph.meta.get('split')!r}, not {data.split_name!r}"]
    recorded = graph.lineage
    if recorded is None:
        return ["it records no lineage (built by an older MISHON)"]
    now = graph_lineage(data, settings.graph)
    return [f"{change} changed since it was built" for change in recorded.changes(now)]


def run_lineage(
    data: SplitData,
    graph: HeteroGraph | None,
    settings: RunSettings,
    features: str | None = None,
) -> Lineage:
    """What a run is trained from: posts, split, features (`features`: their fingerprint,
    when already computed), what is trained, and the graph."""
    built = graph.lineage if graph is not None else None
    return Lineage(
        posts=data.posts_fingerprint,
        split=data.fingerprint,
        features=features or features_fingerprint(data.dataset),
        settings=settings_digest(settings, include=TRAINED_SETTINGS),
        graph=built.fingerprint if built else None,
    )


def make_network(settings: RunSettings, inputs: ModelInputs) -> MishonNetwork:
    unit_dims = {m: int(u.units.shape[2]) for m, u in inputs.modalities.items()}
    return MishonNetwork(
        settings.model, unit_dims, inputs.num_users, len(inputs.vocabulary), list(inputs.adjacency)
    )


def train_model(
    dataset: Path,
    settings: RunSettings,
    out: Path | None,
    *,
    resume: bool = False,
    graph: HeteroGraph | None = None,
    stage: StageFn | None = None,
    progress: ProgressFn | None = None,
    notice: StageFn | None = None,
    steps: StepFn | None = None,
) -> tuple[MishonNetwork, ModelInputs, SplitData, TrainState]:
    """Train MISHON on `dataset`; with `out`, write (or resume) a run directory there.

    `stage` is told each stage's name, `progress` each epoch's figures, `steps` each
    mini-batch step, `notice` anything the user should read (a graph rebuilt because its
    inputs changed). Process 0 holds the run directory's lock (`locks.exclusive_writer`) while
    it trains: a second writer is refused.
    """
    processes = distributed.from_environment()
    distributed.check_can_train(processes, settings.train.batch_size, out)
    holds_lock = out is not None and processes.is_main  # process 0 writes the run
    with exclusive_writer(out) if holds_lock else nullcontext():  # type: ignore[arg-type]
        return _train_model(
            dataset, settings, out, processes, resume, graph, stage, progress, notice, steps
        )


def _train_model(
    dataset: Path,
    settings: RunSettings,
    out: Path | None,
    processes: distributed.Processes,
    resume: bool,
    graph: HeteroGraph | None,
    stage: StageFn | None,
    progress: ProgressFn | None,
    notice: StageFn | None,
    steps: StepFn | None,
) -> tuple[MishonNetwork, ModelInputs, SplitData, TrainState]:
    report = stage or (lambda _name: None)
    if settings.train.threads:
        torch.set_num_threads(settings.train.threads)
    if out is not None and out.is_dir() and processes.is_main:
        for leftover in out.glob(".*.tmp"):  # files a killed run was writing: the run owns them
            leftover.unlink()
        recover_checkpoint(out)  # a run killed while checkpointing
    if out is not None and (out / STATE).is_file() and not resume:
        raise MishonError(f"{out} already holds a training run: pass --resume or another --out")
    dataset = dataset.resolve()
    resuming = resume and out is not None and (out / RUN_FILE).is_file()
    if resuming and out is not None:
        _check_resumable(out, settings)
    if graph is not None:
        name = graph.meta["split"]
    else:
        name = split_name(dataset, settings, out if resuming else None)
    data = load_split_data(dataset, name)
    features = features_fingerprint(dataset)  # read once for the checks below
    if resuming and out is not None:  # before anything in the run directory is rebuilt
        _check_lineage(out, run_lineage(data, None, settings, features), "resume", settings)
    device = distributed.device_of(processes, resolve_device(settings.train.device))
    with distributed.process_group(processes, device):
        if graph is None:
            with distributed.main_first(processes):  # process 0 builds and saves it
                graph = graph_for(data, settings, out, report, notice)
        lineage = run_lineage(data, graph, settings, features)
        report("loading features")
        vocabulary = None
        if resume and out is not None and (out / VOCABULARY).is_file():
            recorded = read_run_info(out).vocabulary_digest if (out / RUN_FILE).is_file() else None
            vocabulary = read_vocabulary(out, recorded)
        inputs = build_inputs(data, graph, settings.model.min_count, vocabulary).to(device)
        seed_everything(settings.train.seed)
        # initialised on the CPU, then moved: a seed gives the same initial weights on any device
        network = make_network(settings, inputs).to(device)
        distributed.broadcast_parameters(processes, network.parameters())
        trainer = Trainer(network, inputs, data, settings.train, out, processes)
        if out is not None:
            resumed = resume and trainer.resume()
            if not resumed and processes.is_main:
                write_run_files(out, dataset, graph.meta["split"], settings, inputs, lineage)
        tracker: Tracker = (
            open_tracker(
                settings.train.tracking,
                out,
                settings.model_dump(mode="json"),
                lineage.fingerprint,
                settings.train.tracking_uri,
                resume=resuming,
            )
            if out is not None and processes.is_main
            else NoTracker()
        )

        def tracked(row: dict[str, Any]) -> None:
            tracker.epoch(row)
            if progress is not None:
                progress(row)

        report("training")
        try:
            state = trainer.fit(tracked, steps)
        finally:
            tracker.close()
    log.info(
        "trained %d epochs (%s); best valid F1@5 %.4f at epoch %d; run in %s",
        state.epoch, state.stopped, state.best_score, state.best_epoch, out,
    )  # fmt: skip
    return network, inputs, data, state


def _check_resumable(out: Path, settings: RunSettings) -> None:
    """Resuming may change the optimisation's limits, not what is being trained."""
    saved = read_run_info(out).settings
    changed = [
        name for name in ("graph", "model") if getattr(saved, name) != getattr(settings, name)
    ]
    if settings.split not in (None, saved.split):
        changed.append("split")
    if changed:
        raise MishonError(
            f"cannot resume {out} with other {' and '.join(changed)} settings: "
            f"pass --config {out / CONFIG}"
        )


def split_name(dataset: Path, settings: RunSettings, run: Path | None = None) -> str:
    """The split a run uses: the settings' one, else the run's (resuming `run`), else the
    dataset's only split."""
    if settings.split:
        return settings.split
    if run is not None:
        return read_run_info(run).split
    return default_split(dataset)


def _check_lineage(run: Path, now: Lineage, action: str, settings: RunSettings) -> None:
    """Refuse to `action` a run whose recorded inputs differ from `now` (runs before lineages
    record none and pass; runs before `settings_digest` recorded the legacy fingerprint of
    `settings`)."""
    recorded = read_run_info(run).lineage
    if recorded is None:
        return
    legacy = legacy_settings_digest(settings, include=TRAINED_SETTINGS)
    changed = recorded.changes(now, ignore=("code",), legacy_settings=legacy)
    if changed:
        raise MishonError(
            f"cannot {action} {run}: {', '.join(changed)} changed since it was trained, so its "
            "figures could score posts it was trained on. Restore them, or train a new run: "
            f"`mishon train DATA --config {run / CONFIG} --out NEW_RUN`"
        )


def write_run_files(
    out: Path,
    dataset: Path,
    split: str,
    settings: RunSettings,
    inputs: ModelInputs,
    lineage: Lineage,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(inputs.vocabulary.tags, out / VOCABULARY)
    vocabulary_digest = file_digest(out / VOCABULARY)
    resolved = {"split": split, **settings.model_dump(mode="json", exclude={"split"})}
    with atomic_path(out / CONFIG) as tmp:
        tmp.write_text(yaml.safe_dump(resolved, sort_keys=False), "utf-8")
    info = RunInfo(
        dataset=str(dataset),
        split=split,
        settings=RunSettings.model_validate(resolved),
        vocabulary_size=len(inputs.vocabulary),
        modalities=list(inputs.modalities),
        versions=package_versions(),
        lineage=lineage,
        vocabulary_digest=vocabulary_digest,
    )
    write_json(info.model_dump(mode="json"), out / RUN_FILE)


def read_vocabulary(run: Path, expected: str | None = None) -> Vocabulary:
    """The run's vocabulary.json: unique hashtag strings whose digest is the one run.json
    recorded (`expected`, where known); anything else is an error naming the file."""
    path = run / VOCABULARY
    retrain = f"restore it or retrain the run (`mishon train DATA --out {run}`)"
    if expected is not None and path.is_file() and file_digest(path) != expected:
        raise MishonError(f"{path} was changed after training (run.json has its digest): {retrain}")
    try:
        tags = json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise MishonError(f"cannot read {path} ({exc}): {retrain}") from None
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise MishonError(f"{path} is not a list of hashtags: {retrain}")
    if len(set(tags)) != len(tags):
        raise MishonError(f"{path} repeats a hashtag: {retrain}")
    return Vocabulary(tags)


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Weights from a safetensors file, every value finite; an error names the file."""
    try:
        weights = load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise MishonError(f"cannot read {path} ({exc}): retrain the run") from None
    broken = sorted(name for name, value in weights.items() if not torch.isfinite(value).all())
    if broken:
        raise MishonError(
            f"{path} holds values that are not finite in {', '.join(broken[:3])}: retrain the run"
        )
    return weights


@dataclass
class TrainedRun:
    """A finished run loaded back: settings, data, inputs and the best network."""

    path: Path
    settings: RunSettings
    data: SplitData
    inputs: ModelInputs
    network: MishonNetwork
    info: RunInfo
    graph: HeteroGraph

    @property
    def fingerprint(self) -> str:
        """The run's own fingerprint: its lineage and its best weights."""
        recorded = self.info.lineage
        weights = file_digest(self.path / BEST_WEIGHTS)
        return digest([recorded.fingerprint if recorded else None, weights])


def load_run(run: Path, dataset: Path | None = None, device: str = "auto") -> TrainedRun:
    """Load the best model of the run directory `run` (its dataset may be moved: `dataset`).

    `device` (auto, cpu, cuda, cuda:N) is where its inputs and network are placed.
    """
    if not (run / RUN_FILE).is_file() or not (run / BEST_WEIGHTS).is_file():
        raise MishonError(f"{run} is not a trained run: run `mishon train DATA --out {run}`")
    recover_checkpoint(run, discard_uncommitted=False)  # a training may be writing the next
    info = read_run_info(run)
    settings = info.settings
    graph = load_graph(run)
    recorded = Path(info.dataset)
    if dataset is None and not (recorded / POSTS_FILE).is_file():
        raise MishonError(
            f"{run} was trained on {recorded}, which holds no dataset any more: if it moved, "
            f"pass its new place with --dataset (or dataset= in Python)"
        )
    data = load_split_data(dataset or recorded, info.split)
    _check_lineage(run, run_lineage(data, graph, settings), "load", settings)
    vocabulary = read_vocabulary(run, info.vocabulary_digest)
    inputs = build_inputs(data, graph, settings.model.min_count, vocabulary)
    network = make_network(settings, inputs)
    weights = read_weights(run / BEST_WEIGHTS)
    expected = network.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    reshaped = sorted(
        k for k in set(weights) & set(expected) if weights[k].shape != expected[k].shape
    )
    if missing or unexpected or reshaped:
        found = [
            f"{label} {', '.join(keys[:3])}"
            for label, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("other shapes:", reshaped),
            )
            if keys
        ]
        raise MishonError(
            f"{run / BEST_WEIGHTS} does not fit the network its settings describe "
            f"({'; '.join(found)}): it was trained by another version of MISHON; retrain it"
        )
    network.load_state_dict(weights)
    target = resolve_device(device)
    network, inputs = network.to(target).eval(), inputs.to(target)
    return TrainedRun(run, settings, data, inputs, network, info, graph)
