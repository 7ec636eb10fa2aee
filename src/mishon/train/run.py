"""A run directory: the graph, the settings, the vocabulary, the weights and the history.

runs/NAME/
  run.json           dataset, split, resolved settings, vocabulary size, package versions
  config.yaml        the resolved settings, reusable as --config
  vocabulary.json    the output layer's hashtags, in order
  graph.json, graph.safetensors     the graph (`mishon graph` writes the same files)
  model.safetensors  best weights;  last.safetensors, optimizer.safetensors,
                     rng.safetensors,,
  trainer.json       resumable state;  history.csv  per-epoch loss and validation figures
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors.torch import load_file

from mishon.config import RunSettings
from mishon.data.store import atomic_path, write_json
from mishon.errors import MishonError
from mishon.evaluate.data import SplitData, load_split_data
from mishon.features.store import package_versions
from mishon.graph.build import HeteroGraph, build_graph, default_split
from mishon.graph.io import METADATA, load_graph, save_graph
from mishon.model.device import resolve_device
from mishon.model.inputs import ModelInputs, Vocabulary, build_inputs
from mishon.model.network import MishonNetwork
from mishon.train.trainer import (
    BEST_WEIGHTS,
    STATE,
    ProgressFn,
    Trainer,
    TrainState,
    encode_eval,
    top_k,
)

RUN_FILE = "run.json"
VOCABULARY = "vocabulary.json"
CONFIG = "config.yaml"
StageFn = Callable[[str], None]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def graph_for(
    dataset: Path, settings: RunSettings, out: Path | None, stage: StageFn
) -> HeteroGraph:
    """The run's graph: reused from `out` when built from the same dataset, split and settings."""
    split = settings.split or default_split(dataset)
    if out is not None and (out / METADATA).is_file():
        graph = load_graph(out)
        same = (
            graph.meta.get("split") == split
            and Path(graph.meta.get("dataset", "")).resolve() == dataset.resolve()
            and graph.meta.get("settings") == settings.graph.model_dump(mode="json")
        )
        if same:
            return graph
        stage("the graph in the run directory has other settings: rebuilding it")
    graph = build_graph(dataset, split, settings.graph, stage=stage)
    if out is not None:
        save_graph(graph, out)
    return graph


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
) -> tuple[MishonNetwork, ModelInputs, SplitData, TrainState]:
    """Train MISHON on `dataset`; with `out`, write (or resume) a run directory there."""
    report = stage or (lambda _name: None)
    if settings.train.threads:
        torch.set_num_threads(settings.train.threads)
    if out is not None and (out / STATE).is_file() and not resume:
        raise MishonError(f"{out} already holds a training run: pass --resume or another --out")
    dataset = dataset.resolve()
    if resume and out is not None and (out / RUN_FILE).is_file():
        _check_resumable(out, settings)
    if graph is None:
        graph = graph_for(dataset, settings, out, report)
    report("loading features")
    data = load_split_data(dataset, graph.meta["split"])
    vocabulary = None
    if resume and out is not None and (out / VOCABULARY).is_file():
        vocabulary = Vocabulary(json.loads((out / VOCABULARY).read_text("utf-8")))
    device = resolve_device(settings.train.device)
    inputs = build_inputs(data, graph, settings.model.min_count, vocabulary).to(device)
    seed_everything(settings.train.seed)
    # initialised on the CPU, then moved: a seed gives the same initial weights on any device
    network = make_network(settings, inputs).to(device)
    trainer = Trainer(network, inputs, data, settings.train, out)
    if out is not None:
        resumed = resume and trainer.resume()
        if not resumed:
            write_run_files(out, dataset, graph.meta["split"], settings, inputs)
    report("training")
    state = trainer.fit(progress)
    return network, inputs, data, state


def _check_resumable(out: Path, settings: RunSettings) -> None:
    """Resuming may change the optimisation's limits, not what is being trained."""
    saved = RunSettings.model_validate(json.loads((out / RUN_FILE).read_text("utf-8"))["settings"])
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


def write_run_files(
    out: Path, dataset: Path, split: str, settings: RunSettings, inputs: ModelInputs
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(inputs.vocabulary.tags, out / VOCABULARY)
    resolved = {"split": split, **settings.model_dump(mode="json", exclude={"split"})}
    with atomic_path(out / CONFIG) as tmp:
        tmp.write_text(yaml.safe_dump(resolved, sort_keys=False), "utf-8")
    write_json(
        {
            "dataset": str(dataset),
            "split": split,
            "settings": resolved,
            "vocabulary_size": len(inputs.vocabulary),
            "modalities": list(inputs.modalities),
            "versions": package_versions(),
        },
        out / RUN_FILE,
    )


@dataclass
class TrainedRun:
    """A finished run loaded back: settings, data, inputs and the best network."""

    path: Path
    settings: RunSettings
    data: SplitData
    inputs: ModelInputs
    network: MishonNetwork
    info: dict[str, Any]
    graph: HeteroGraph


def load_run(run: Path, dataset: Path | None = None, device: str = "auto") -> TrainedRun:
    """Load the best model of the run directory `run` (its dataset may be moved: `dataset`).

    `device` (auto, cpu, cuda, cuda:N) is where its inputs and network are placed.
    """
    if not (run / RUN_FILE).is_file() or not (run / BEST_WEIGHTS).is_file():
        raise MishonError(f"{run} is not a trained run: run `mishon train DATA --out {run}`")
    info = json.loads((run / RUN_FILE).read_text("utf-8"))
    settings = RunSettings.model_validate(info["settings"])
    graph = load_graph(run)
    data = load_split_data(dataset or Path(info["dataset"]), info["split"])
    vocabulary = Vocabulary(json.loads((run / VOCABULARY).read_text("utf-8")))
    inputs = build_inputs(data, graph, settings.model.min_count, vocabulary)
    network = make_network(settings, inputs)
    weights = load_file(str(run / BEST_WEIGHTS))
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


class MishonRecommender:
    """A trained network behind the baselines' Recommender interface."""

    def __init__(self, network: MishonNetwork, inputs: ModelInputs, name: str = "MISHON") -> None:
        self.name = name
        self.network = network
        self.tags = inputs.vocabulary.tags
        self.vocabulary = set(self.tags)
        self.fused = encode_eval(network, inputs)

    def fit(self, data: SplitData) -> None:  # trained already
        return None

    def recommend(self, positions: np.ndarray, k: int) -> list[list[str]]:
        ranked = top_k(self.network, self.fused, np.asarray(positions), min(k, len(self.tags)))
        return [[self.tags[i] for i in row] for row in ranked]
