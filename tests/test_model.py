"""The MISHON network, its training loop and run directories."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.nn import SAGEConv
from typer.testing import CliRunner

from mishon.cli import app
from mishon.evaluate.run import evaluate
from mishon.model.inputs import Targets, Vocabulary, adjacency
from mishon.model.loss import linear_cross_entropy
from mishon.model.sparse import csr_edge_index
from mishon.recommenders import MishonRecommender, fit_baseline
from mishon.train.run import load_run, train_model

from .planted import planted_dataset, small_settings


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return planted_dataset(tmp_path_factory.mktemp("planted") / "ds")


def test_vocabulary_keeps_frequent_training_hashtags_most_used_first() -> None:
    vocabulary = Vocabulary.from_training([["a", "b"], ["b"], ["c"], ["b", "a"]], min_count=2)
    assert vocabulary.tags == ["b", "a"]


def test_targets_are_uniform_over_known_hashtags() -> None:
    vocabulary = Vocabulary(["a", "b", "c"])
    targets = Targets.build([["a", "c", "zz"], [], ["b"]], vocabulary)
    row, column, weight = targets.rows(torch.tensor([2, 0]))
    assert row.tolist() == [0, 1, 1]
    assert column.tolist() == [1, 0, 2]
    assert weight.tolist() == pytest.approx([1.0, 0.5, 0.5])
    assert targets.has_target().tolist() == [True, False, True]


@pytest.mark.parametrize("aggr", ["mean", "max", "min", "sum", "mul"])
def test_csr_adjacency_gives_the_edge_index_result(aggr: str) -> None:
    torch.manual_seed(0)
    x_src, x_dst = torch.randn(6, 4), torch.randn(5, 4)
    index = np.array([[0, 1, 2, 3, 5, 5, 0], [1, 1, 4, 0, 0, 2, 4]])
    conv = SAGEConv((4, 4), 3, aggr=aggr)
    expected = conv((x_src, x_dst), torch.from_numpy(index))
    got = conv((x_src, x_dst), adjacency(index, 6, 5))
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("aggr", ["max", "min"])
def test_the_edge_index_of_a_csr_adjacency_gives_its_result(aggr: str) -> None:
    torch.manual_seed(0)
    x_src, x_dst = torch.randn(6, 4), torch.randn(5, 4)
    index = np.array([[0, 1, 2, 3, 5, 5, 0], [1, 1, 4, 0, 0, 2, 4]])
    csr = adjacency(index, 6, 5)
    edges = csr_edge_index(csr)
    assert sorted(map(tuple, edges.t().tolist())) == sorted(map(tuple, index.T.tolist()))
    conv = SAGEConv((4, 4), 3, aggr=aggr)
    torch.testing.assert_close(conv((x_src, x_dst), edges), conv((x_src, x_dst), csr))


def test_checkpointed_encoders_give_the_same_loss_and_gradients(planted: Path) -> None:
    network, inputs, _, _ = train_model(planted, small_settings(epochs=1), None)
    network.train(False)
    positions = inputs.train_positions()
    results = []
    for above in (0, 10**12):  # recompute everything, then nothing
        network.settings.checkpoint_above = above
        network.settings.encode_chunk = 7
        network.zero_grad()
        network.loss(network.encode(inputs), inputs, positions, 64).backward()
        results.append(network.encoders["textual"].score_proj.weight.grad.clone())
    torch.testing.assert_close(results[0], results[1])


def test_chunked_loss_matches_one_chunk(planted: Path) -> None:
    network, inputs, _, _ = train_model(planted, small_settings(epochs=1), None)
    network.train(False)
    positions = inputs.train_positions()
    losses, grads = [], []
    for chunk in (7, 10_000):
        network.zero_grad()
        loss = network.loss(network.encode(inputs), inputs, positions, chunk)
        loss.backward()
        losses.append(loss.item())
        grads.append(network.output.weight.grad.clone())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    torch.testing.assert_close(grads[0], grads[1])


@pytest.mark.parametrize("chunk", [3, 64])
def test_fused_cross_entropy_equals_log_softmax_in_value_and_gradients(chunk: int) -> None:
    generator = torch.Generator().manual_seed(0)
    vectors = torch.randn(10, 6, generator=generator, dtype=torch.float64)
    weight = torch.randn(9, 6, generator=generator, dtype=torch.float64)
    bias = torch.randn(9, generator=generator, dtype=torch.float64)
    # post 4 has no target, post 7 a target distribution summing to 0.5 (mass enters the grad)
    row = torch.tensor([0, 0, 1, 2, 3, 5, 5, 5, 6, 7, 8, 9])
    column = torch.tensor([1, 4, 0, 8, 2, 3, 4, 5, 8, 6, 0, 7])
    target = torch.tensor([0.5, 0.5, 1, 1, 1, 0.2, 0.3, 0.5, 1, 0.5, 1, 1], dtype=torch.float64)
    leaves = [t.clone().requires_grad_() for t in (vectors, weight, bias)]
    fused = linear_cross_entropy(*leaves, (row, column, target), chunk)
    (2 * fused).backward()
    plain = [t.clone().requires_grad_() for t in (vectors, weight, bias)]
    log_probs = torch.log_softmax(plain[0] @ plain[1].t() + plain[2], dim=1)
    expected = -(log_probs[row, column] * target).sum()
    (2 * expected).backward()
    torch.testing.assert_close(fused, expected)
    for ours, theirs in zip(leaves, plain, strict=True):
        torch.testing.assert_close(ours.grad, theirs.grad)
    with torch.no_grad():
        torch.testing.assert_close(
            linear_cross_entropy(vectors, weight, bias, (row, column, target), chunk), expected
        )


def test_training_beats_popularity_on_a_planted_dataset(planted: Path) -> None:
    network, inputs, data, state = train_model(planted, small_settings(), None)
    mishon = evaluate(MishonRecommender(network, inputs).fit(data), data)
    popularity = evaluate(fit_baseline("popularity", data), data)
    assert state.best_epoch > 0
    assert mishon["all"]["F1@3"] > popularity["all"]["F1@3"] + 0.2
    # the personal tag needs the user, the topic tag the content: both should be found
    assert mishon["all"]["R@3"] > 0.8


def test_hashtag_inputs_hide_each_loss_posts_own_hashtags(planted: Path) -> None:
    from mishon.model.inference import label_split

    network, inputs, _, _ = train_model(planted, small_settings(epochs=1), None)
    network.eval()
    assert network.uses_hashtag_inputs
    positions = inputs.train_positions()
    torch.manual_seed(3)
    scale, loss_positions = label_split(network, positions, inputs.num_posts)
    shown = torch.nonzero(scale).flatten()
    # every training post is either shown (weighted 1 / rate) or a loss post, never both
    assert sorted(shown.tolist() + loss_positions.tolist()) == sorted(positions.tolist())
    assert torch.all(scale[shown] == 1 / network.settings.label_rate)
    with torch.no_grad():
        before = network.encode(inputs, scale)
        # another hashtag for a loss post changes nothing of its own prediction
        post = int(loss_positions[0])
        first = int(inputs.targets.indptr[post])
        original = inputs.targets.indices[first].item()
        inputs.targets.indices[first] = (original + 1) % len(inputs.vocabulary)
        after = network.encode(inputs, scale)
        # ... while a shown post's hashtags do reach the graph
        shown_post = int(shown[0])
        shown_first = int(inputs.targets.indptr[shown_post])
        inputs.targets.indices[first] = original
        inputs.targets.indices[shown_first] += 1
        changed = network.encode(inputs, scale)
        inputs.targets.indices[shown_first] -= 1
    torch.testing.assert_close(after, before)
    assert not torch.allclose(changed[shown_post], before[shown_post])


def test_without_hashtag_inputs_every_training_post_is_a_loss_post(planted: Path) -> None:
    from mishon.model.inference import label_split

    settings = small_settings(epochs=1)
    settings.model.label_inputs = False
    network, inputs, _, _ = train_model(planted, settings, None)
    assert network.hashtag_embedding is None
    scale, loss_positions = label_split(network, inputs.train_positions(), inputs.num_posts)
    assert scale is None
    assert torch.equal(loss_positions, inputs.train_positions())


def test_user_dropout_hides_embeddings_only_while_training(planted: Path) -> None:
    settings = small_settings(epochs=1)
    settings.model.user_dropout = 0.5
    network, inputs, _, _ = train_model(planted, settings, None)
    embedding = network.user_embedding.weight
    network.eval()
    with torch.no_grad():
        full = network.node_inputs(inputs)["user"]
        network.train()
        torch.manual_seed(0)
        dropped = network.node_inputs(inputs)["user"]
    # a dropped user's input is its input minus its embedding; a kept one's is unchanged
    gone = torch.isclose(full - dropped, embedding, atol=1e-6).all(dim=1)
    kept = torch.isclose(full, dropped, atol=1e-6).all(dim=1)
    assert torch.all(gone | kept)
    assert 0 < int(gone.sum()) < inputs.num_users


@pytest.mark.parametrize("aggregator", ["max", "product"])
def test_other_aggregators_train_to_finite_losses(planted: Path, aggregator: str) -> None:
    settings = small_settings(epochs=3)
    settings.model.aggregator = aggregator
    _, _, _, state = train_model(planted, settings, None)
    assert all(np.isfinite(row["loss"]) for row in state.history)


def test_saved_run_predicts_like_the_trained_model(planted: Path, tmp_path: Path) -> None:
    network, inputs, data, _ = train_model(planted, small_settings(epochs=20), tmp_path / "run")
    loaded = load_run(tmp_path / "run")
    cases = data.cases("test")
    assert MishonRecommender(loaded.network, loaded.inputs).fit(loaded.data).recommend(
        cases, 5
    ) == (MishonRecommender(network, inputs).fit(data).recommend(cases, 5))
    assert (tmp_path / "run" / "history.csv").read_text().startswith("epoch,loss,valid_f1")
    # weights from a network without hashtag inputs (an older run) are refused by name
    from safetensors.torch import load_file, save_file

    from mishon.errors import MishonError

    weights = load_file(str(tmp_path / "run" / "model.safetensors"))
    del weights["hashtag_embedding.weight"]
    save_file(weights, str(tmp_path / "run" / "model.safetensors"))
    with pytest.raises(MishonError, match=r"model.safetensors does not match .*checkpoint.json"):
        load_run(tmp_path / "run")
    (tmp_path / "run" / "checkpoint.json").unlink()  # as a run from before checkpoint digests
    with pytest.raises(MishonError, match=r"missing hashtag_embedding\.weight.*retrain it"):
        load_run(tmp_path / "run")


def test_resume_continues_exactly(planted: Path, tmp_path: Path) -> None:
    straight, *_ = train_model(planted, small_settings(epochs=10, patience=100), tmp_path / "a")
    settings = small_settings(epochs=5, patience=100)
    train_model(planted, settings, tmp_path / "b")
    with pytest.raises(Exception, match="already holds a training run"):
        train_model(planted, settings, tmp_path / "b")
    other = small_settings(epochs=10, patience=100)
    other.model.hidden = 16
    with pytest.raises(Exception, match="other model settings"):
        train_model(planted, other, tmp_path / "b", resume=True)
    resumed, *_ = train_model(
        planted, small_settings(epochs=10, patience=100), tmp_path / "b", resume=True
    )
    for name, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, msg=name)
    history = (tmp_path / "b" / "history.csv").read_text().splitlines()
    assert len(history) == 11 and history[-1].startswith("10,")


KILLED_RUN = """
import os, sys
from pathlib import Path

calls, real = 0, os.replace


def replace(a, b):  # every file the run writes takes its name through os.replace
    global calls
    calls += 1
    if calls == int(sys.argv[1]):
        os._exit(9)  # as kill -9: no clean-up of any kind
    real(a, b)


os.replace = replace
from tests.planted import small_settings
from mishon.train.run import train_model

train_model(Path(sys.argv[2]), small_settings(epochs=10, patience=100), Path(sys.argv[3]))
"""


def test_resume_after_a_kill_at_any_file_write_equals_an_uninterrupted_run(
    planted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import random
    import subprocess
    import sys

    replaced = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (replaced.append(b), real_replace(a, b)))
    straight, *_ = train_model(planted, small_settings(epochs=10, patience=100), tmp_path / "a")
    monkeypatch.undo()
    total = len(replaced)
    points = [*random.Random(0).sample(range(1, total - 3), 2), total - 3]  # last: after commit
    for point in points:
        run = tmp_path / f"killed-{point}"
        done = subprocess.run(
            [sys.executable, "-c", KILLED_RUN, str(point), str(planted), str(run)],
            cwd=Path(__file__).parents[1],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 9, done.stderr
        resumed, *_ = train_model(
            planted, small_settings(epochs=10, patience=100), run, resume=True
        )
        for name, value in straight.state_dict().items():
            torch.testing.assert_close(resumed.state_dict()[name], value, msg=f"{point}: {name}")
        left = [p for p in run.glob(".*") if p.name != ".lock"]  # the lock file stays
        assert not left, f"kill at write {point} left {left}"
        assert (run / "history.csv").read_text().splitlines()[-1].startswith("10,")


def test_cli_train_and_evaluate(planted: Path, tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(small_settings(epochs=10).model_dump_json())  # JSON is valid YAML
    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", str(planted), "--out", str(out), "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "best valid F1@5" in result.output
    result = runner.invoke(app, ["evaluate", str(out), "--baselines", "popularity,history"])
    assert result.exit_code == 0, result.output
    assert "MISHON" in result.output and "user history" in result.output
    assert (out / "evaluation-test.json").is_file()
    result = runner.invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    page = (out / "report.html").read_text()
    for section in ("Training", "Test metrics", "Recall by hashtag frequency", "Graph"):
        assert f"<h2>{section}</h2>" in page
    # self-contained: every plot inlined, no file beside it, no path outside the run
    assert page.count('src="data:image/png;base64,') == 3 and not list(out.glob("*.png"))
    assert str(tmp_path) not in page and "MISHON report: run run on " in page
    assert "<b>static</b> protocol" in page and "MISHON against the best baseline" in page
    result = runner.invoke(app, ["train", str(planted), "--out", str(out)])
    assert result.exit_code == 1 and "--resume" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  aggregator: median\n")
    result = runner.invoke(app, ["train", str(planted), "--out", str(out), "--config", str(bad)])
    assert result.exit_code == 1 and "model.aggregator" in result.output


def test_experiment_writes_tables_and_plot_and_skips_finished_work(
    planted: Path, tmp_path: Path
) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(small_settings(epochs=5).model_dump_json())
    out = tmp_path / "ablation"
    args = ["experiment", "ablation", str(planted), "--out", str(out), "--config", str(config)]
    result = CliRunner().invoke(app, [*args, "--seeds", "2"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "ablation.json").read_text())
    assert [row["variant"] for row in summary["rows"]] == [
        "MISHON",
        "no hashtag inputs (paper)",
        "no attention",
        "no graph (content-only)",
        "no user-user edges",
        "no modality-modality edges",
    ]
    assert all(row["seeds"] == [0, 1] for row in summary["rows"])
    assert (out / "ablation.png").read_bytes()[:4] == b"\x89PNG"
    assert "| MISHON |" in (out / "ablation.md").read_text()
    finished = sorted((out / "variants").iterdir())
    assert len(finished) == 12
    stamps = [p.stat().st_mtime_ns for p in finished]
    result = CliRunner().invoke(app, [*args, "--seeds", "2"])
    assert result.exit_code == 0, result.output
    assert [p.stat().st_mtime_ns for p in finished] == stamps
    # some variants only: their finished seeds are reused, the summary has their rows
    only = [*args, "--seeds", "2", "--only", "mishon,no-graph--content-only"]
    result = CliRunner().invoke(app, only)
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "ablation.json").read_text())["rows"]
    assert [row["variant"] for row in rows] == ["MISHON", "no graph (content-only)"]
    assert [p.stat().st_mtime_ns for p in finished] == stamps
    wrong = CliRunner().invoke(app, [*args, "--only", "mishon,no-graph"])
    assert wrong.exit_code == 1 and "unknown variant(s) ['no-graph']" in wrong.output
    assert "no-graph--content-only" in wrong.output


def test_default_config_file_is_the_documented_defaults() -> None:
    result = CliRunner().invoke(app, ["config"])
    assert result.exit_code == 0, result.output
    shipped = (Path(__file__).parents[1] / "configs" / "default.yaml").read_text()
    assert result.output.strip() == shipped.strip()
    assert "aggregator: mean  # (mean|max|min|sum|product)" in shipped


def test_content_only_baseline_trains_without_edges(planted: Path) -> None:
    from mishon.data.split_data import load_split_data

    data = load_split_data(planted, "given")
    recommender = fit_baseline("content-only", data, small_settings(epochs=40))
    assert recommender.name == "content-only"
    assert recommender.model_.network.edge_types == []
    result = evaluate(recommender, data)
    assert result["all"]["F1@3"] > evaluate(fit_baseline("popularity", data), data)["all"]["F1@3"]


@pytest.mark.parametrize("sources", [6, 3])  # 3 < 5 destinations: transformed first
def test_mean_sage_conv_matches_sage_conv_with_gradients(sources: int) -> None:
    from mishon.model.sparse import MeanSAGEConv

    torch.manual_seed(0)
    # destination 3 has no neighbour
    index = np.array([[0, 1, 2, 3, 5, 5, 0], [1, 1, 4, 0, 0, 2, 4]])
    index[0] %= sources
    index = np.unique(index, axis=1)
    reference, fast = SAGEConv((4, 4), 3, aggr="mean"), MeanSAGEConv(4, 3)
    fast.load_state_dict(reference.state_dict())
    results = []
    for conv, edges in ((reference, torch.from_numpy(index)), (fast, adjacency(index, sources, 5))):
        x_src = torch.randn(
            sources, 4, generator=torch.Generator().manual_seed(1), requires_grad=True
        )
        x_dst = torch.randn(5, 4, generator=torch.Generator().manual_seed(2))
        out = conv((x_src, x_dst), edges)
        (out * torch.arange(15.0).view(5, 3)).sum().backward()
        results.append((out.detach(), x_src.grad, conv.lin_l.weight.grad, conv.lin_l.bias.grad))
        with torch.inference_mode():  # the path without autograd (ranking a new post)
            torch.testing.assert_close(conv((x_src.detach(), x_dst), edges), out.detach())
    for ours, theirs in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(ours, theirs)


def test_a_failing_variant_is_recorded_and_the_others_still_run(
    planted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mishon import experiments
    from mishon.errors import MishonError

    real = experiments.run_variant

    def flaky(dataset, variant, seed, graph, *args):  # type: ignore[no-untyped-def]
        if variant.name == "product":
            raise MishonError("the loss became nan at epoch 2")
        return real(dataset, variant, seed, graph, *args)

    monkeypatch.setattr(experiments, "run_variant", flaky)
    summary = experiments.run_experiment(
        "aggregators", planted, small_settings(epochs=3), tmp_path / "agg", seeds=1
    )
    rows = {row["variant"]: row for row in summary["rows"]}
    assert rows["product"]["failed"] == "the loss became nan at epoch 2"
    assert rows["mean"]["all F1@5"]["mean"] >= 0.0
    assert (
        "| product | failed: the loss became nan at epoch 2 |"
        in (tmp_path / "agg" / "aggregators.md").read_text()
    )
    assert not (tmp_path / "agg" / "variants" / "product-seed0.json").exists()


def test_cli_train_prints_progress_lines_to_a_log_and_takes_set(
    planted: Path, tmp_path: Path
) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(small_settings(epochs=10).model_dump_json())
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "train",
            str(planted),
            "--out",
            str(out),
            "--config",
            str(config),
            "--set",
            "model.hidden=16",
            "--set",
            "train.eval_every=2",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert lines[0].endswith("preparing (0/10)")  # a plain line, no live bar, in a log
    assert lines[-1].startswith("[") and lines[-1].endswith("(10/10)")
    saved = json.loads((out / "run.json").read_text())["settings"]
    assert saved["model"]["hidden"] == 16 and saved["train"]["eval_every"] == 2
    assert saved["train"]["epochs"] == 10


def test_no_generated_module_is_left_in_the_temporary_folder() -> None:
    import sys

    from mishon.model.network import sage_conv

    for aggr in ("mean", "max"):
        conv = sage_conv(4, aggr)
        name = f"{type(conv).__module__}_{type(conv).__name__}_propagate"
        assert not Path(sys.modules[name].__file__).exists(), aggr


def test_training_without_validation_posts_keeps_the_last_weights_and_claims_no_score(
    planted: Path, tmp_path: Path
) -> None:
    import shutil

    dataset = tmp_path / "ds"
    shutil.copytree(planted, dataset)
    runner = CliRunner()
    split = ["data", "split", str(dataset), "--strategy", "random", "--valid-fraction", "0"]
    assert runner.invoke(app, split).exit_code == 0
    config = tmp_path / "run.yaml"
    config.write_text(small_settings(epochs=4).model_dump_json())
    out = tmp_path / "run"
    args = ["train", str(dataset), "--out", str(out), "--config", str(config), "--split", "random"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "no validation posts: the weights of epoch 4 (the last) kept" in result.output
    assert "best valid F1@5" not in result.output and "4.0000" not in result.output
    saved = json.loads((out / "trainer.json").read_text())
    assert saved["best_score"] == -1.0 and saved["best_epoch"] == 4


def test_the_library_logs_what_it_did(
    planted: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Training and evaluation report through `logging` (mishon.*), beside the CLI's output."""
    import logging

    from mishon.evaluate.evaluation import evaluate_run

    library = logging.getLogger("mishon")
    library.addHandler(caplog.handler)  # whether or not the service's setup stopped propagation
    try:
        with caplog.at_level(logging.INFO, logger="mishon"):
            train_model(planted, small_settings(epochs=3), tmp_path / "run")
            evaluate_run(tmp_path / "run", baselines="popularity")
    finally:
        library.removeHandler(caplog.handler)
    messages = {r.name: r.getMessage() for r in caplog.records}
    assert "trained 3 epochs (epochs); best valid F1@5" in messages["mishon.train"]
    assert "MISHON live F1@5" in messages["mishon.evaluate"]
    assert "nodes" in messages["mishon.graph"]


def test_a_frozen_linear_layer_gives_the_layers_outputs() -> None:
    from mishon.model.inference import FrozenLinear

    layer = torch.nn.Linear(8, 5)
    frozen = FrozenLinear(layer.weight, layer.bias)
    rows = torch.randn(3, 8)
    assert torch.allclose(frozen(rows), layer(rows), atol=1e-6)
    assert frozen.weight_t.shape == (8, 5) and frozen.weight_t.is_contiguous()
    with torch.no_grad():
        layer.weight.add_(1.0)  # a copy: the frozen layer keeps the weights it was given
    assert not torch.allclose(frozen(rows), layer(rows), atol=1e-3)
