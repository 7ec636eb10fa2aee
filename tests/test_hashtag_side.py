"""The inductive hashtag side: rows for hashtags outside the vocabulary, names as text."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mishon.data.split_data import SplitData
from mishon.evaluate.evaluation import evaluate_run, evaluation_path
from mishon.model.inference import encode_eval
from mishon.model.inputs import Targets, Vocabulary
from mishon.recommenders.evidence import EVIDENCE, KnownPosts
from mishon.recommenders.hashtag_names import HashtagNames, segment_hashtag, tokenizer_words
from mishon.recommenders.hashtag_side import (
    HashtagSide,
    HashtagSideSettings,
    fit_hashtag_encoder,
    hashtag_encoder_path,
    hashtag_means,
    run_hashtag_encoder,
)
from mishon.recommenders.live import LiveMishon
from mishon.train.run import load_run, train_model

from .planted import planted_dataset, small_settings

RANKS = {"the": 1, "sun": 2, "set": 3, "sunset": 4, "walking": 5, "dead": 6, "vibes": 7}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    dataset = planted_dataset(tmp_path_factory.mktemp("side") / "ds")
    network, inputs, data, _ = train_model(dataset, small_settings(epochs=5), None)
    return network, inputs, data


def test_names_are_split_into_the_likeliest_words() -> None:
    assert segment_hashtag("sunsetvibes", RANKS) == "sunset vibes"
    assert segment_hashtag("thewalkingdead", RANKS) == "the walking dead"
    assert segment_hashtag("sunset2026", RANKS) == "sunset 2026"
    assert segment_hashtag("qx", RANKS) == "qx"  # nothing known: kept whole
    assert segment_hashtag("", RANKS) == ""


def test_tokenizer_words_are_whole_words_ranked_by_id() -> None:
    class Tokenizer:
        def get_vocab(self) -> dict[str, int]:
            return {"[CLS]": 0, "the": 5, "##s": 6, "sun": 7, "a": 8, "x": 9, "é": 10, "set": 11}

    assert tokenizer_words(Tokenizer()) == {"the": 1, "sun": 2, "a": 3, "set": 4}


def test_name_vectors_are_the_segmented_names_pooled_like_captions() -> None:
    seen: list[list[str]] = []

    class Extractor:  # one unit per word: the word's length on axis 0, 1 on axis 1
        tokenizer = None

        def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
            seen.append(texts)
            units = np.zeros((len(texts), 4, 2), np.float32)
            mask = np.zeros((len(texts), 4), bool)
            for i, text in enumerate(texts):
                for j, word in enumerate(text.split()[:4]):
                    units[i, j], mask[i, j] = (len(word), 1.0), True
            return units, mask

    names = HashtagNames(Extractor(), centre=np.array([0.0, 1.0], np.float32))
    names.ranks = RANKS
    vectors = names(["sunsetvibes", "sun"])
    assert seen == [["sunset vibes", "sun"]]
    assert vectors.tolist() == [[1.0, 0.0], [1.0, 0.0]]  # (mean length, 1) - centre, unit
    assert names([]).shape == (0, 2)


def test_the_encoder_starts_at_the_mean_vectors_and_ranks_each_posts_hashtags(
    trained: tuple,
) -> None:
    network, inputs, data = trained
    train = np.flatnonzero(data.is_train)
    hashtags = data.posts["hashtags"].to_numpy()
    fused = encode_eval(network, inputs)
    unit = fused / fused.norm(dim=1, keepdim=True)
    means, counts = hashtag_means(unit, torch.from_numpy(train), inputs)
    has = counts > 0
    log_count = torch.log1p(counts)
    start = fit_hashtag_encoder(network, inputs, hashtags, train, HashtagSideSettings(steps=0))
    settings = HashtagSideSettings(steps=100)
    encoder = fit_hashtag_encoder(network, inputs, hashtags, train, settings)
    with torch.no_grad():
        rows, biases = start(means, log_count)
        # unfitted: a multiple of the mean vector, no bias
        scale = float(rows[has][0].norm() / means[has][0].norm())
        assert torch.allclose(rows, scale * means, atol=1e-6) and not biases.any()
        fitted, fitted_biases = encoder(means, log_count)
        assert torch.equal(
            fitted,
            fit_hashtag_encoder(network, inputs, hashtags, train, settings)(means, log_count)[0],
        )  # seeded
        scores = fused[train] @ fitted[has].T + fitted_biases[has]
    # a post's own hashtags rank near the top of the encoder's rows (random: the middle)
    post, tag, _ = inputs.targets.rows(torch.from_numpy(train))
    column = torch.cumsum(has.long(), 0) - 1
    kept = has[tag]
    own = scores[post[kept], column[tag[kept]]]
    ranks = (scores[post[kept]] > own[:, None]).sum(dim=1).float()
    assert ranks.mean() < int(has.sum()) / 4


def test_a_hashtag_outside_the_vocabulary_gets_a_probability_once_known(trained: tuple) -> None:
    network, inputs, data = trained
    fused = encode_eval(network, inputs)
    known = KnownPosts(fused.numpy(), [])
    vocabulary = inputs.vocabulary.tags
    hashtags, train = data.posts["hashtags"].to_numpy(), np.flatnonzero(data.is_train)
    encoder = fit_hashtag_encoder(network, inputs, hashtags, train, HashtagSideSettings(steps=50))
    side = HashtagSide(network, vocabulary, encoder, known)
    post = int(data.cases("test")[0])
    assert side.outside_probabilities(fused[[post]], 10)[0] == {}
    known.reveal(post, "someone", ["brandnew", vocabulary[0]])
    side.reveal(post, ["brandnew", vocabulary[0]])
    assert side.tags == ["brandnew"]  # the vocabulary's keep their learned rows
    (probability,) = side.outside_probabilities(fused[[post]], 10)[0].values()
    # its carrier's own vector gives it more than an average hashtag's share
    assert 1.0 / (len(vocabulary) + 1) < probability < 1.0
    with torch.no_grad():
        unit = fused[post] / fused[post].norm()
        row, bias = encoder(unit[None], torch.log1p(torch.ones(1)))
        logits = torch.cat([network.scores(fused[[post]])[0], fused[post] @ row.T + bias])
    assert probability == pytest.approx(float(logits.softmax(0)[-1]), rel=1e-5)
    # a second carrier moves its row to the mean of the two
    other = int(data.cases("test")[1])
    known.reveal(other, "someone", ["brandnew"])
    side.reveal(other, ["brandnew"])
    side.outside_probabilities(fused[[post]], 10)
    both = (known.fused[post] + known.fused[other]) / 2
    with torch.no_grad():
        expected, _ = encoder(torch.from_numpy(both)[None], torch.log1p(torch.full((1,), 2.0)))
    assert torch.allclose(side.rows_t[:, 0], expected[0], atol=1e-5)


def test_live_gives_a_new_hashtag_model_evidence(trained: tuple) -> None:
    network, inputs, data = trained
    cases = data.cases("test")
    carrier, query = int(cases[0]), int(cases[1])
    posts = data.posts.copy()
    posts.at[carrier, "hashtags"] = ["brandnew"]
    altered = SplitData(data.dataset, data.split_name, posts, data.rows, data.all_post_ids)
    side = HashtagSideSettings(steps=50)
    for evidence in (("model", "model_outside"), ("model",)):
        live = LiveMishon(network, inputs, evidence=evidence, side=side).fit(altered)
        live.observe(np.array([carrier]))
        table = live.evidence(np.array([query]))[0]
        values = dict(zip(table.hashtags, table.values.tolist(), strict=True))
        outside = EVIDENCE.index("model_outside")
        assert (values.get("brandnew", [0.0] * len(EVIDENCE))[outside] > 0) == (
            "model_outside" in evidence
        )
        assert values.get("brandnew", [0.0])[0] == 0.0  # `model`: the vocabulary only
        assert all(v[outside] == 0 for t, v in values.items() if t in live.model_.vocabulary)


def test_names_need_an_embedder(trained: tuple) -> None:
    network, inputs, _ = trained
    with pytest.raises(Exception, match="name embedder"):
        LiveMishon(network, inputs, side=HashtagSideSettings(names=True))
    # without the evidence that reads them, names are not needed
    LiveMishon(network, inputs, evidence=("model",), side=HashtagSideSettings(names=True))


def test_hashtag_means_over_a_few_posts_draw_among_the_carriers() -> None:
    vocabulary = Vocabulary(["a", "b"])
    targets = Targets.build([["a"], ["a", "b"], ["a"], []], vocabulary)
    inputs = SimpleNamespace(targets=targets, vocabulary=vocabulary)
    vectors = torch.tensor([[1.0, 0], [0, 1.0], [-1.0, 0], [5.0, 5.0]])
    posts = torch.arange(4)
    means, counts = hashtag_means(vectors, posts, inputs)
    assert counts.tolist() == [3, 1]
    assert torch.allclose(means, torch.tensor([[0, 1 / 3], [0, 1]]))
    for seed in range(5):
        generator = torch.Generator().manual_seed(seed)
        one, ones = hashtag_means(vectors, posts, inputs, 1, generator)
        assert ones.tolist() == [1, 1] and one[1].tolist() == [0, 1]
        assert one[0].tolist() in vectors[:3].tolist()
    two, twos = hashtag_means(vectors, posts, inputs, 2, torch.Generator().manual_seed(0))
    assert twos.tolist() == [2, 1] and two[1].tolist() == [0, 1]


def test_evaluation_with_hashtag_names(tiny_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)  # the evaluation is written into the run
    evaluation = evaluate_run(run, protocol="known-past", hashtag_names=True)
    assert evaluation_path(run, "test", "known-past", hashtag_names=True).name == (
        "evaluation-test-known-past-names.json"
    )
    assert evaluation_path(run, "test", "known-past", hashtag_names=True).is_file()
    live = next(r for r in evaluation.results if r["recommender"] == "MISHON live")
    assert live["hashtag_names"] is True and "model_outside" in live["weights"]["known_user"]
    names = HashtagNames.for_split(load_run(run).data)
    vectors = names(["sunsetvibes", "cat"])
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert names.segment("thewalkingdead") == "the walking dead"  # MiniLM's word list


def test_the_run_keeps_its_fitted_encoder(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    for kept in run.glob("hashtag-side-*"):  # another test may have kept one already
        kept.unlink()
    loaded = load_run(run)
    settings = HashtagSideSettings(steps=20)
    path = hashtag_encoder_path(loaded, settings)
    assert path.parent == run and not path.exists()
    fitted, was_fitted = run_hashtag_encoder(loaded, settings)
    assert was_fitted and path.is_file()
    assert hashtag_encoder_path(loaded, HashtagSideSettings(steps=21)) != path

    def no_fit(*args: object, **kwargs: object) -> None:
        raise AssertionError("fitted again")

    monkeypatch.setattr("mishon.recommenders.hashtag_side.fit_hashtag_encoder", no_fit)
    again, was_fitted = run_hashtag_encoder(load_run(run), settings)
    assert not was_fitted
    for name, value in fitted.state_dict().items():
        assert torch.equal(again.state_dict()[name], value)
    monkeypatch.undo()
    path.write_bytes(b"not safetensors")  # damaged: fitted again and replaced
    refit, was_fitted = run_hashtag_encoder(loaded, settings)
    assert was_fitted
    assert torch.equal(refit.from_posts.weight, fitted.from_posts.weight)  # seeded
    assert run_hashtag_encoder(loaded, settings)[1] is False
