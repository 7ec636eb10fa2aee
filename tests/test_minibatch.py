"""Mini-batch training over sampled neighbourhoods, and data-parallel training under torchrun."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mishon.errors import MishonError
from mishon.graph.io import load_graph
from mishon.model.sampling import NeighbourSampler, sample_rows
from mishon.train.run import load_run, train_model
from mishon.train.trainer import validation_metrics

from .planted import planted_dataset, small_settings

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return planted_dataset(
        tmp_path_factory.mktemp("planted") / "ds", modalities=("textual", "visual")
    )


def mini_batch(dropout: float = 0.0, **train: object):  # type: ignore[no-untyped-def]
    settings = small_settings(batch_size=24, fanouts=[3, 2], user_posts=4, **train)
    settings.model.dropout = dropout  # 0 where the comparisons need the same computation
    return settings


def test_a_crowded_row_keeps_fanout_distinct_neighbours_chosen_by_its_hash() -> None:
    crow = np.array([0, 2, 9, 9])
    col = np.arange(9) * 10
    owner, columns = sample_rows(crow, col, np.array([1, 0, 2]), 3, np.uint64(7))
    assert owner.tolist() == [0, 0, 0, 1, 1]
    assert len(set(columns[:3])) == 3 and set(columns[:3]) <= {20, 30, 40, 50, 60, 70, 80}
    assert columns[3:].tolist() == [0, 10]  # a row within the fan-out keeps all
    again = sample_rows(crow, col, np.array([1]), 3, np.uint64(7))[1]
    assert again.tolist() == columns[:3].tolist()  # the same node, the same sample
    other = [sample_rows(crow, col, np.array([1]), 3, np.uint64(k))[1].tolist() for k in range(9)]
    assert len({tuple(sorted(o)) for o in other}) > 1  # another epoch, another sample


def test_full_fanouts_compute_what_the_whole_graph_computes(planted: Path, tmp_path: Path) -> None:
    network, inputs, *_ = train_model(planted, small_settings(epochs=5), tmp_path / "run")
    network.eval()
    sampler = NeighbourSampler(
        inputs, network.edge_types, network.modalities, [10**6, 10**6], 10**6, seed=0
    )
    posts = torch.tensor([3, 17, 40, 41, 90])
    with torch.no_grad():
        whole = network.encode(inputs)[posts]
        sampled = network.encode_sampled(inputs, sampler.sample(posts, epoch=1))
    torch.testing.assert_close(sampled, whole, rtol=1e-5, atol=1e-5)


def test_sampled_validation_with_full_fanouts_is_the_whole_graphs(
    planted: Path, tmp_path: Path
) -> None:
    network, inputs, data, _ = train_model(planted, small_settings(epochs=5), tmp_path / "run")
    everything = NeighbourSampler(
        inputs, network.edge_types, network.modalities, [10**6, 10**6], 10**6, seed=0
    )
    whole = validation_metrics(network, inputs, data, 5)
    sampled = validation_metrics(network, inputs, data, 5, everything, batch_size=7)
    assert whole is not None and sampled is not None
    assert sampled == pytest.approx(whole)
    few = NeighbourSampler(inputs, network.edge_types, network.modalities, [1, 1], 1, seed=0)
    again = validation_metrics(network, inputs, data, 5, few, batch_size=7)
    assert again == validation_metrics(network, inputs, data, 5, few, batch_size=7)  # one sample
    _, _, _, state = train_model(
        planted, mini_batch(epochs=5, validation="sampled"), tmp_path / "sampled"
    )
    assert state.history[-1]["valid_f1"] > 0


def test_a_post_computes_the_same_in_any_batch(planted: Path, tmp_path: Path) -> None:
    network, inputs, *_ = train_model(planted, small_settings(epochs=5), tmp_path / "run")
    network.eval()
    sampler = NeighbourSampler(inputs, network.edge_types, network.modalities, [3, 1], 3, seed=4)
    with torch.no_grad():
        alone = network.encode_sampled(inputs, sampler.sample(torch.tensor([5, 60]), epoch=2))
        together = network.encode_sampled(
            inputs, sampler.sample(torch.tensor([5, 60, 7, 100, 11]), epoch=2)
        )
        later = network.encode_sampled(inputs, sampler.sample(torch.tensor([5, 60]), epoch=3))
    torch.testing.assert_close(together[:2], alone, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(later, alone)  # each epoch draws its own neighbours
    batch = sampler.sample(torch.tensor([5, 60]), epoch=2)
    # no node keeps more than its hop's fan-out of any relation; hop 0: the batch's neighbours
    for hop, fanout in zip(reversed(batch.hops), (3, 1), strict=True):
        kept = [int(a.crow_indices().diff().max()) for a in hop.adjacency.values()]
        assert max(kept) == fanout


def test_mini_batch_training_learns_and_loads_as_any_run(planted: Path, tmp_path: Path) -> None:
    seen: list[tuple[int, int, int]] = []
    _, _, _, state = train_model(
        planted, mini_batch(epochs=30), tmp_path / "run", steps=lambda *s: seen.append(s)
    )
    assert {s[0] for s in seen} == set(range(1, 31))  # every epoch reports its steps
    assert all(done == steps for _, done, steps in seen if done == max(s[1] for s in seen))
    assert max(s[2] for s in seen) >= 2  # several steps an epoch (about 48 loss posts, 24 each)
    losses = [row["loss"] for row in state.history]
    assert losses[-1] < 0.7 * losses[0]
    assert state.best_score > 0.5  # two planted hashtags of two: popularity gets about 0.1
    loaded = load_run(tmp_path / "run")
    assert loaded.settings.train.batch_size == 24


def test_mini_batch_resume_continues_exactly(planted: Path, tmp_path: Path) -> None:
    straight, *_ = train_model(planted, mini_batch(epochs=10, patience=100), tmp_path / "a")
    train_model(planted, mini_batch(epochs=5, patience=100), tmp_path / "b")
    resumed, *_ = train_model(
        planted, mini_batch(epochs=10, patience=100), tmp_path / "b", resume=True
    )
    for name, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, msg=name)


def test_settings_need_a_fanout_per_layer() -> None:
    with pytest.raises(ValueError, match=r"2 GraphSAGE layers .* one per layer"):
        small_settings(batch_size=8, fanouts=[5])


def test_several_processes_need_mini_batches(
    planted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(MishonError, match=r"needs mini-batches \(train.batch_size\)"):
        train_model(planted, small_settings(epochs=1), tmp_path / "run")
    with pytest.raises(MishonError, match="needs a run directory"):
        train_model(planted, mini_batch(epochs=1), None)
    assert not (tmp_path / "run").exists()


def torchrun(planted: Path, out: Path, processes: int, *extra: str) -> None:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
        "-m",
        "mishon",
        "train",
        str(planted),
        "--out",
        str(out),
        "--config",
        str(out.parent / "config.yaml"),
        *extra,
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=environment)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_two_processes_train_what_one_process_trains(
    planted: Path, tmp_path: Path, dropout: float
) -> None:
    """With dropout too: each post's mask is drawn from (seed, epoch, post), not from the
    process's generator."""
    import yaml

    settings = mini_batch(dropout, epochs=2, eval_every=1, patience=100)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    train_model(planted, settings, tmp_path / "one")
    torchrun(planted, tmp_path / "two", 2)
    one = load_file(str(tmp_path / "one" / "last.safetensors"))
    two = load_file(str(tmp_path / "two" / "last.safetensors"))
    assert one.keys() == two.keys()
    for name, value in one.items():
        torch.testing.assert_close(two[name], value, rtol=1e-4, atol=1e-5, msg=name)
    assert load_graph(tmp_path / "two").post_ids == load_graph(tmp_path / "one").post_ids
    # resumed in two processes from the two-process run's checkpoint, as one process would
    torchrun(planted, tmp_path / "two", 2, "--resume", "--epochs", "3")
    again = mini_batch(dropout, epochs=3, eval_every=1, patience=100)
    train_model(planted, again, tmp_path / "one", resume=True)
    one = load_file(str(tmp_path / "one" / "last.safetensors"))
    two = load_file(str(tmp_path / "two" / "last.safetensors"))
    for name, value in one.items():
        torch.testing.assert_close(two[name], value, rtol=1e-4, atol=1e-5, msg=name)
