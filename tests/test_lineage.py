"""The artifact chain: fingerprints recorded by each stage and checked by the next."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from mishon.cli import app
from mishon.config import SplitSettings
from mishon.data.split_data import load_split_data
from mishon.data.splits import make_split
from mishon.data.store import read_posts, write_split
from mishon.errors import MishonError
from mishon.evaluate.evaluation import evaluate_run, load_evaluation
from mishon.features.base import Modality
from mishon.features.imported import import_vectors
from mishon.graph.io import load_graph
from mishon.lineage import (
    Lineage,
    digest,
    file_digest,
    legacy_settings_digest,
    settings_digest,
)
from mishon.train.run import graph_for, load_run, train_model

from .planted import planted_dataset, small_settings


def _split(dataset: Path, seed: int) -> None:
    assignment, meta = make_split(read_posts(dataset), SplitSettings(strategy="random", seed=seed))
    write_split(dataset, "random", assignment, meta)


@pytest.fixture
def trained(tmp_path: Path) -> tuple[Path, Path]:
    """A planted dataset split at random (seed 0) and a short run trained on it."""
    dataset = planted_dataset(tmp_path / "data" / "ds")
    _split(dataset, seed=0)
    settings = small_settings(epochs=5, device="cpu")
    settings.split = "random"
    train_model(dataset, settings, tmp_path / "run")
    return dataset, tmp_path / "run"


def test_lineage_names_what_changed() -> None:
    before = Lineage(split="a", features="f", settings="s")
    after = Lineage(split="b", features="f", settings="t", graph="g")
    assert before.changes(after) == ["the split's post assignment", "the settings"]
    assert before.changes(before) == []
    assert before.fingerprint != after.fingerprint
    assert digest({"a": 1, "b": 2}) == digest({"b": 2, "a": 1})


def test_a_setting_added_at_its_default_keeps_the_fingerprint() -> None:
    class Before(BaseModel):
        k: int = 10

    class After(Before):
        earlier_only: bool = False  # a later MISHON's new setting

    assert settings_digest(Before()) == settings_digest(After())
    assert settings_digest(After(earlier_only=True)) != settings_digest(After())
    assert settings_digest(Before(k=5)) != settings_digest(Before())
    assert legacy_settings_digest(Before()) != legacy_settings_digest(After())


def test_a_run_with_the_legacy_settings_fingerprint_still_loads(
    trained: tuple[Path, Path],
) -> None:
    _, run = trained
    info = json.loads((run / "run.json").read_text())
    settings = load_run(run).settings
    legacy = legacy_settings_digest(settings, include={"graph", "model"})
    assert info["lineage"]["settings"] != legacy  # recorded the new way
    info["lineage"]["settings"] = legacy  # as MISHON recorded it before
    (run / "run.json").write_text(json.dumps(info))
    assert load_run(run).settings == settings
    info["lineage"]["settings"] = "0" * 16  # anything else is still refused
    (run / "run.json").write_text(json.dumps(info))
    with pytest.raises(MishonError, match="the settings changed since it was trained"):
        load_run(run)


def test_a_resplit_rebuilds_the_graph_and_refuses_the_run(trained: tuple[Path, Path]) -> None:
    dataset, run = trained
    settings = small_settings(epochs=5)
    settings.split = "random"
    before = load_graph(run)
    old_train = set(np.asarray(before.post_ids)[before.post_split == "train"])
    _split(dataset, seed=1)
    data = load_split_data(dataset, "random")
    now_test = set(data.posts.loc[data.posts["split"] == "test", "post_id"])
    assert now_test & old_train  # the leak the fingerprints stop: test posts trained on
    with pytest.raises(MishonError, match=r"the split's post assignment changed since it was"):
        load_run(run)
    with pytest.raises(MishonError, match=r"cannot resume .*split's post assignment changed"):
        train_model(dataset, small_settings(epochs=10), run, resume=True)
    notices: list[str] = []
    graph = graph_for(data, settings, run, stage=lambda _s: None, notice=notices.append)
    assert notices == [
        f"rebuilding the graph in {run}: the split's post assignment changed since it was built"
    ]
    assert graph.lineage is not None and graph.lineage.split == data.fingerprint
    rebuilt_train = set(np.asarray(graph.post_ids)[graph.post_split == "train"])
    assert not now_test & rebuilt_train


def test_an_unchanged_chain_is_reused_without_a_rebuild(trained: tuple[Path, Path]) -> None:
    dataset, run = trained
    settings = small_settings(epochs=5)
    settings.split = "random"
    notices: list[str] = []
    data = load_split_data(dataset, "random")
    graph = graph_for(data, settings, run, stage=notices.append, notice=notices.append)
    assert notices == []
    assert graph.lineage == load_graph(run).lineage
    assert load_run(run).data.split_name == "random"
    # a moved dataset (same content, other path) is the same input
    moved = dataset.parent.parent / "moved"
    shutil.copytree(dataset, moved)
    assert load_run(run, moved).data.dataset == moved


def test_other_settings_or_features_are_named(trained: tuple[Path, Path], tmp_path: Path) -> None:
    dataset, run = trained
    settings = small_settings(epochs=5)
    settings.split = "random"
    settings.graph.textual.k = 3
    notices: list[str] = []
    data = load_split_data(dataset, "random")
    graph_for(data, settings, run, stage=lambda _s: None, notice=notices.append)
    assert notices == [f"rebuilding the graph in {run}: the settings changed since it was built"]
    # new vectors for the same posts: the stores' content digest changes
    vectors = np.load(dataset.parent / "v.npy")
    np.save(tmp_path / "w.npy", vectors[:, ::-1].copy())
    import_vectors(
        dataset, Modality.TEXTUAL, tmp_path / "w.npy", dataset.parent / "ids.txt", overwrite=True
    )
    with pytest.raises(MishonError, match=r"the feature stores, the graph changed since"):
        load_run(run)


def test_an_evaluation_of_other_weights_is_refused(trained: tuple[Path, Path]) -> None:
    _, run = trained
    evaluation = evaluate_run(run, baselines="popularity")
    assert [r["recommender"] for r in evaluation.results] == ["MISHON", "MISHON live", "popularity"]
    loaded = load_run(run)
    assert load_evaluation(run, loaded).lineage.run == loaded.fingerprint
    weights = load_file(str(run / "model.safetensors"))
    weights["output.bias"] = weights["output.bias"] + 1.0
    save_file(weights, str(run / "model.safetensors"))
    checkpoint = json.loads((run / "checkpoint.json").read_text())
    checkpoint["files"]["model.safetensors"] = file_digest(run / "model.safetensors")
    (run / "checkpoint.json").write_text(json.dumps(checkpoint))  # as training again would
    with pytest.raises(MishonError, match=r"computed before the run's weights changed: rerun"):
        load_evaluation(run, load_run(run))


def test_cli_train_says_why_it_rebuilds_the_graph(trained: tuple[Path, Path]) -> None:
    dataset, run = trained
    _split(dataset, seed=1)
    out = run.parent / "run3"
    out.mkdir()
    for name in ("graph.json", "graph.safetensors"):
        shutil.copy(run / name, out / name)
    result = CliRunner().invoke(
        app, ["train", str(dataset), "--out", str(out), "--split", "random", "--epochs", "2"]
    )
    assert result.exit_code == 0, result.output
    printed = " ".join(result.output.split())
    assert f"rebuilding the graph in {out}: the split's post assignment changed since" in printed
    result = CliRunner().invoke(app, ["evaluate", str(run)])
    assert result.exit_code == 1
    assert "changed since it was trained" in " ".join(result.output.split())


def test_a_damaged_run_file_is_named(trained: tuple[Path, Path]) -> None:
    _, run = trained
    (run / "run.json").write_text('{"dataset": "x"}')
    with pytest.raises(MishonError, match=r"run\.json cannot be read as a MISHON run"):
        load_run(run)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _resign_graph(run: Path) -> None:
    meta = json.loads((run / "graph.json").read_text())
    meta["tensors_digest"] = file_digest(run / "graph.safetensors")
    (run / "graph.json").write_text(json.dumps(meta))


def _break_node_ids(run: Path) -> None:
    from safetensors.numpy import load_file as load_numpy
    from safetensors.numpy import save_file as save_numpy

    tensors = load_numpy(str(run / "graph.safetensors"))
    key = next(k for k in tensors if k.endswith("__index"))
    tensors[key][1, 0] = 10**9  # a segfault in the sparse kernels before it was checked
    save_numpy(tensors, str(run / "graph.safetensors"))
    _resign_graph(run)


def _nan_weights(run: Path) -> None:
    weights = load_file(str(run / "model.safetensors"))
    weights["output.bias"][0] = float("nan")
    save_file(weights, str(run / "model.safetensors"))
    checkpoint = json.loads((run / "checkpoint.json").read_text())
    checkpoint["files"]["model.safetensors"] = file_digest(run / "model.safetensors")
    (run / "checkpoint.json").write_text(json.dumps(checkpoint))


def _edit_vocabulary(run: Path) -> None:
    tags = json.loads((run / "vocabulary.json").read_text())
    (run / "vocabulary.json").write_text(json.dumps(tags[::-1]))


DAMAGES = {
    "graph node ids out of range": (_break_node_ids, r"ids outside 0\.\.\d+: rebuild it"),
    "graph tensors truncated": (
        lambda run: _truncate(run / "graph.safetensors"),
        r"graph.safetensors does not match .*graph.json",
    ),
    "graph json truncated": (
        lambda run: _truncate(run / "graph.json"),
        r"cannot read .*graph.json .*mishon graph DATA --out",
    ),
    "weights not finite": (_nan_weights, r"model.safetensors holds values that are not finite"),
    "weights truncated": (
        lambda run: _truncate(run / "model.safetensors"),
        r"model.safetensors does not match .*checkpoint.json",
    ),
    "trainer state truncated": (
        lambda run: _truncate(run / "trainer.json"),
        r"trainer.json does not match .*checkpoint.json",
    ),
    "vocabulary edited": (_edit_vocabulary, r"vocabulary.json was changed after training"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_run_is_a_clear_error(trained: tuple[Path, Path], damage: str) -> None:
    _, run = trained
    change, message = DAMAGES[damage]
    change(run)
    with pytest.raises(MishonError, match=message):
        load_run(run)


def test_damaged_dataset_files_are_clear_errors(trained: tuple[Path, Path]) -> None:
    dataset, run = trained
    _truncate(dataset / "splits" / "random.parquet")
    with pytest.raises(MishonError, match=r"cannot read .*random.parquet.*mishon data split"):
        load_run(run)
    _split(dataset, seed=0)
    values = dataset / "features" / "textual" / "values.npy"
    _truncate(values)
    with pytest.raises(MishonError, match=r"cannot read .*values.npy.*mishon extract"):
        load_run(run)


def test_feature_values_that_are_not_finite_are_refused(trained: tuple[Path, Path]) -> None:
    dataset, run = trained
    values = np.load(dataset / "features" / "textual" / "values.npy", mmap_mode="r+")
    values[3, 0, 0] = np.nan
    values.flush()
    with pytest.raises(MishonError, match=r"values.npy holds values that are not finite.*extract"):
        load_run(run)


def test_a_graph_save_killed_at_any_point_leaves_the_old_or_the_new_graph(
    trained: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """save_graph replaces three times: the tensors' temporary file, graph.json (the commit),
    the tensors' final name; a kill before the commit leaves the old graph, after it the new."""
    import os

    from mishon.graph.io import save_graph

    _, run = trained
    old = load_graph(run)
    new = load_graph(run)
    new.edges = {t: (index[:, :1], weight[:1]) for t, (index, weight) in new.edges.items()}
    real_replace = os.replace
    for kill_at in (1, 2, 3):
        save_graph(old, run)
        calls: list[object] = []

        def replace(a: object, b: object, kill_at: int = kill_at, calls: list = calls) -> None:
            calls.append(b)
            if len(calls) == kill_at:
                raise KeyboardInterrupt  # as a kill right there
            real_replace(a, b)

        monkeypatch.setattr(os, "replace", replace)
        with pytest.raises(KeyboardInterrupt):
            save_graph(new, run)
        monkeypatch.setattr(os, "replace", real_replace)
        loaded = load_graph(run)
        edges = sum(index.shape[1] for index, _ in loaded.edges.values())
        expected = new if kill_at == 3 else old
        assert edges == sum(index.shape[1] for index, _ in expected.edges.values()), kill_at
