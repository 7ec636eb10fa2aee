"""One MISHON-live ranker from evaluation to service: what is measured is what is served."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from mishon.config import (
    EvidenceIndexSettings,
    EvidenceSettings,
    SecondStageSettings,
    ServeSettings,
)
from mishon.evaluate.evaluation import evaluate_run, selected_ranking
from mishon.recommend.served import load_served
from mishon.recommenders import index as index_module
from mishon.recommenders.evidence import KnownPosts, Query, gather_evidence
from mishon.recommenders.live import LiveMishon
from mishon.serve.app import create_app
from mishon.serve.service import HashtagService
from mishon.train.run import load_run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path) -> Path:
    copy = tmp_path_factory.mktemp("one-ranker") / "run"
    shutil.copytree(tiny_run, copy)
    return copy


def _served_as_measured(run: Path, measured: LiveMishon) -> None:
    """The test posts ranked by `measured` (as new posts, knowing the training posts) and by
    the service over HTTP, with each post's clip and caption: the same lists and scores."""
    data = measured.data_
    cases = data.cases("test")
    assert len(cases) >= 2
    expected = measured.ranked(cases, 5)
    served = load_served(run, know_dataset=False, placement="new")
    assert (served.ranker.ranker is None) == (measured.ranker is None)
    service = HashtagService(run, ServeSettings(), served=served)
    posts = data.posts
    with TestClient(create_app(service)) as client:
        for position, ranked in zip(cases.tolist(), expected, strict=True):
            form = {"user_id": str(posts["user_id"][position]), "k": "5"}
            if posts["caption"][position]:
                form["caption"] = str(posts["caption"][position])
            video = data.dataset / str(posts["video"][position])
            with video.open("rb") as handle:
                answer = client.post(
                    "/v1/recommend", data=form, files={"video": ("clip.mp4", handle, "video/mp4")}
                )
            assert answer.status_code == 200, answer.text
            got = [(h["hashtag"], h["score"]) for h in answer.json()["hashtags"]]
            assert [t for t, _ in got] == [t for t, _ in ranked], position
            np.testing.assert_allclose([s for _, s in got], [s for _, s in ranked], atol=1e-4)
    service.close()


def test_the_service_ranks_posts_as_the_evaluation_measures_them(run: Path) -> None:
    # the evaluation path: MISHON live ranking the test posts as new posts, knowing the
    # training posts (static protocol); no stream evaluation yet: the default weights
    loaded = load_run(run, device="cpu")
    measured = LiveMishon.from_run(loaded, placement="new", refresh_every=0).fit(loaded.data)
    _served_as_measured(run, measured)


def test_a_learned_second_stage_is_served_as_it_was_measured(
    tmp_path: Path, tiny_run: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    stage = SecondStageSettings(mode="learned", trees=20)
    evaluate_run(
        run,
        protocol="stream",
        refresh_every=0,
        evidence_settings=EvidenceSettings(second_stage=stage),
    )
    loaded = load_run(run, device="cpu")
    chosen = selected_ranking(run, loaded)
    assert chosen.ranker is not None
    measured = LiveMishon.from_run(
        loaded, chosen.weights, placement="new", refresh_every=0, ranker=chosen.ranker
    ).fit(loaded.data)
    _served_as_measured(run, measured)


def test_new_posts_and_the_split_get_the_same_candidates(run: Path) -> None:
    """The model's evidence of a new post counts the same best hashtags as a graph post's."""
    loaded = load_run(run, device="cpu")
    settings = EvidenceSettings(model_candidates=3)
    ranker = LiveMishon.from_run(loaded, settings=settings, placement="new").fit(loaded.data)
    graph = LiveMishon.from_run(loaded, settings=settings).fit(loaded.data)
    for live in (ranker, graph):
        fused = live.model_.fused_[:4]
        assert all(len(m) == 3 for m in live.model_evidence(fused))


def _known(rows: int, settings: EvidenceIndexSettings, seed: int = 0, dim: int = 16) -> KnownPosts:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, dim)).astype(np.float32)
    fused = centres[rng.integers(0, 12, rows)] + 0.3 * rng.normal(size=(rows, dim))
    content = []
    for width in (8, 6):
        vectors = rng.normal(size=(rows, width)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        content.append((vectors, rng.random(rows) > 0.2))
    known = KnownPosts(fused.astype(np.float32), content, settings)
    for row in range(rows):
        known.reveal(row, f"u{row % 37}", [f"t{row % 53}", f"c{row % 7}"])
    return known


def _queries(known: KnownPosts, rows: list[int]) -> list[Query]:
    return [
        Query(known.fused[r] + 0.01, [(v[r], bool(p[r])) for v, p in known.content], "u1", {})
        for r in rows
    ]


def test_the_index_probing_every_list_gives_the_exact_scans_evidence() -> None:
    exact = _known(3000, EvidenceIndexSettings())
    indexed = _known(3000, EvidenceIndexSettings(exact_max=0, nlist=20, nprobe=20))
    assert not exact.approximate and indexed.approximate
    settings = EvidenceSettings(neighbours=25, content_neighbours=10)
    queries = _queries(exact, [0, 5, 77, 2999])
    for a, b in zip(
        gather_evidence(exact, queries, settings),
        gather_evidence(indexed, queries, settings),
        strict=True,
    ):
        assert a.hashtags == b.hashtags
        np.testing.assert_allclose(a.values, b.values, atol=1e-5)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_the_index_finds_most_exact_neighbours_and_a_new_post_at_once(kind: str) -> None:
    known = _known(6000, EvidenceIndexSettings(exact_max=0, nprobe=8, kind=kind))  # type: ignore[arg-type]
    queries = known.fused[:200] + 0.01
    exact = known.fused[:6000] @ queries.T
    truth = np.argsort(-exact, axis=0)[:20].T
    found = known.nearest_fused(queries / np.linalg.norm(queries, axis=1, keepdims=True), 20)
    recall = np.mean(
        [len(set(t) & set(f.tolist())) / 20 for t, (f, _) in zip(truth, found, strict=False)]
    )
    assert recall >= 0.9
    # a post added now is its own nearest neighbour at the next search
    vector = np.random.default_rng(5).normal(size=16).astype(np.float32)
    content = [(np.zeros(8, np.float32), False), (np.zeros(6, np.float32), False)]
    row = known.add(vector, content, "newcomer", ["fresh"])
    rows, similarity = known.nearest_fused((vector / np.linalg.norm(vector))[None], 5)[0]
    assert rows[0] == row and similarity[0] == pytest.approx(1.0, abs=1e-5)
    assert known._fused_index is not None and known._fused_index.describe()["kind"] == kind


def test_the_index_is_built_again_once_outgrown() -> None:
    known = _known(400, EvidenceIndexSettings(exact_max=0, regrow=2.0))
    known.nearest_fused(known.fused[:1], 3)
    first = known._fused_index
    assert first is not None and first.trained_on == 400
    content = [(np.zeros(8, np.float32), False), (np.zeros(6, np.float32), False)]
    for i in range(450):
        known.add(np.ones(16, np.float32) + i, content, "grower", ["g"])
    known.nearest_fused(known.fused[:1], 3)
    assert known._fused_index is not first and known._fused_index.trained_on == 850


def test_extending_at_once_knows_what_adding_one_by_one_knows() -> None:
    base = _known(50, EvidenceIndexSettings())
    rng = np.random.default_rng(9)
    fused = rng.normal(size=(30, 16)).astype(np.float32)
    content = [(rng.normal(size=(30, d)).astype(np.float32), rng.random(30) > 0.5) for d in (8, 6)]
    users = [f"v{i % 4}" for i in range(30)]
    tags = [[f"t{i % 5}", "x"] for i in range(30)]
    one_by_one, at_once = _known(50, EvidenceIndexSettings()), base
    for i in range(30):
        one_by_one.add(fused[i], [(v[i], bool(p[i])) for v, p in content], users[i], tags[i])
    rows = at_once.extend(fused, content, users, tags)
    assert rows.tolist() == list(range(50, 80))
    assert at_once.size == one_by_one.size == 80
    assert at_once.uses == one_by_one.uses and at_once.most_uses == one_by_one.most_uses
    assert at_once.history == one_by_one.history
    np.testing.assert_array_equal(at_once.fused[:80], one_by_one.fused[:80])
    settings = EvidenceSettings(neighbours=10, content_neighbours=5)
    queries = _queries(at_once, [3, 60, 79])
    for a, b in zip(
        gather_evidence(at_once, queries, settings),
        gather_evidence(one_by_one, queries, settings),
        strict=True,
    ):
        assert a.hashtags == b.hashtags
        np.testing.assert_allclose(a.values, b.values, atol=1e-6)


@pytest.mark.parametrize(("kind", "posts"), [("ivf", 3000), ("ivf", 9000), ("hnsw", 3000)])
def test_an_index_built_in_chunks_finds_what_one_built_at_once_finds(
    kind: str, posts: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    known = _known(posts, EvidenceIndexSettings(), dim=64)
    rows = np.flatnonzero(known.known[: known.size])[::2]  # every other row: ids are the rows
    settings = EvidenceIndexSettings(exact_max=0, nprobe=4, kind=kind)  # type: ignore[arg-type]
    at_once = index_module.GrowingIndex(known.fused, rows, settings)
    monkeypatch.setattr(index_module, "ADD_CHUNK", 97)
    in_chunks = index_module.GrowingIndex(known.fused, rows, settings)
    assert len(in_chunks) == len(at_once) == len(rows)
    # product codes from 4,096 rows on (1,500 or 4,500 rows here)
    assert in_chunks.codes == ("pq4" if kind == "ivf" and posts > 8192 else "float16")
    queries = known.fused[[0, 10, 2000]]
    found = in_chunks.search(queries, 15)
    assert found[:, 0].tolist() == [0, 10, 2000]  # each row is its own nearest
    assert set(found.ravel().tolist()) <= set(rows.tolist())  # only the rows it was given
    if kind == "ivf":  # the same lists, the same members (HNSW inserts in parallel)
        np.testing.assert_array_equal(found, at_once.search(queries, 15))


def test_room_reserved_ahead_changes_nothing_known() -> None:
    grown, reserved = _known(50, EvidenceIndexSettings()), _known(50, EvidenceIndexSettings())
    reserved.reserve(5000)
    assert len(reserved.known) == 5000 and reserved.size == 50
    assert not reserved.known[50:].any() and not reserved.fused[50:].any()
    fused = reserved.fused[:50].copy()
    reserved.reserve(10)  # never less room than there is
    assert len(reserved.known) == 5000
    content = [(np.ones(8, np.float32), True), (np.zeros(6, np.float32), False)]
    for known in (grown, reserved):
        assert known.add(np.ones(16, np.float32), content, "late", ["b", "a", "b"]) == 50
    np.testing.assert_array_equal(reserved.fused[:50], fused)
    np.testing.assert_array_equal(reserved.fused[:51], grown.fused[:51])
    assert reserved.hashtags_of(50) == grown.hashtags_of(50) == ("b", "a", "b")
    assert reserved.hashtags_of(4000) == ()  # a row not revealed carries none


def test_product_codes_need_enough_rows_and_pairs_of_dimensions() -> None:
    rng = np.random.default_rng(3)
    settings = EvidenceIndexSettings(exact_max=0)
    cases = [(5000, 64, "pq4"), (5000, 65, "float16"), (5000, 32, "float16"), (4000, 64, "float16")]
    for rows, dim, codes in cases:
        vectors = rng.normal(size=(rows, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        index = index_module.GrowingIndex(vectors, np.arange(rows), settings)
        assert index.describe()["codes"] == codes
        assert index.search(vectors[[7, 3210]], 3)[:, 0].tolist() == [7, 3210]
    float16 = index_module.GrowingIndex(
        vectors, np.arange(rows), settings.model_copy(update={"codes": "float16"})
    )
    assert float16.codes == "float16"


def test_refining_product_codes_brings_the_model_space_nearer_the_exact_scan() -> None:
    """Every list probed, so only the codes stand between the index and the exact scan: each
    `refine` step finds more of the exact 20 nearest (near-ties here), and at the default 4
    the rows found keep >= 0.995 of the exact rows' summed similarity."""
    exact = _known(6000, EvidenceIndexSettings(), dim=64)
    queries = _unit(exact.fused[::300] + 0.02)
    truth = _exact_nearest(exact, queries, 20)
    found_share, kept = [], []
    for refine in (1, 2, 4, 8):
        settings = EvidenceIndexSettings(exact_max=0, nlist=16, nprobe=16, refine=refine)
        coded = _known(6000, settings, dim=64)
        found = [rows for rows, _ in coded.nearest_fused(queries, 20)]
        assert coded._fused_index is not None and coded._fused_index.codes == "pq4"
        found_share.append(
            np.mean([len(set(t) & set(f)) / 20 for t, f in zip(truth, found, strict=True)])
        )
        kept.append(
            np.mean(
                [
                    (exact.fused[f] @ q).sum() / (exact.fused[t] @ q).sum()
                    for t, f, q in zip(truth, found, queries, strict=True)
                ]
            )
        )
    assert found_share == sorted(found_share) and found_share[-1] > found_share[0] + 0.3
    assert kept[2] >= 0.995


def test_a_process_first_product_code_search_finds_rows() -> None:
    """faiss 1.15's default scan of product codes answered a process's first search with no
    rows (after pandas was imported); the index's scan must not."""
    program = (
        "import pandas, numpy as np\n"
        "from mishon.config import EvidenceIndexSettings\n"
        "from mishon.recommenders.index import GrowingIndex\n"
        "import faiss; faiss.omp_set_num_threads(1)\n"
        "x = np.random.default_rng(0).normal(size=(20000, 128)).astype(np.float32)\n"
        "x /= np.linalg.norm(x, axis=1, keepdims=True)\n"
        "index = GrowingIndex(x, np.arange(20000), EvidenceIndexSettings(exact_max=0))\n"
        "print(index.codes, index.search(x[5:6], 6)[0].tolist())\n"
    )
    answer = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    ).stdout.split(" ", 1)
    assert answer[0] == "pq4" and json.loads(answer[1])[0] == 5


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _exact_nearest(known: KnownPosts, queries: np.ndarray, count: int) -> list[np.ndarray]:
    """Per query, its `count` nearest known rows by the exact scan, best first (ties by row)."""
    scores = known.fused[: known.size] @ queries.T
    return [np.lexsort((np.arange(known.size), -column))[:count] for column in scores.T]
