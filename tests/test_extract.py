from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mishon.cli import app
from mishon.config import ExtractorSettings, ExtractSettings
from mishon.data.schema import POSTS_SCHEMA
from mishon.data.store import read_posts, write_table
from mishon.data.synth import World
from mishon.errors import InputError, MishonError
from mishon.features.base import Modality
from mishon.features.extract import extract_features
from mishon.features.imported import import_vectors
from mishon.features.store import DONE, FAILED, FeatureStore, check_store, modality_dir

# Small L keeps the default extractors fast enough for unit tests.
FAST = ExtractSettings(
    visual=ExtractorSettings(name="efficientnet-lite0", units=2),
    acoustic=ExtractorSettings(name="logmel", units=4),
    textual=ExtractorSettings(name="minilm", units=8),
    batch_size=4,
    workers=0,
)


def copy_corpus(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("features"))
    return target


def load(dataset: Path, modality: str) -> FeatureStore:
    return FeatureStore.open(modality_dir(dataset, modality))


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory, tiny_corpus: tuple[Path, World]) -> Path:
    dataset = copy_corpus(tiny_corpus[0], tmp_path_factory.mktemp("ex") / "ds")
    extract_features(dataset, FAST)
    return dataset


def test_features_changed_after_extraction_are_caught(extracted: Path, tmp_path: Path) -> None:
    import shutil

    from mishon.errors import MishonError

    dataset = tmp_path / "ds"
    shutil.copytree(extracted, dataset)
    folder = modality_dir(dataset, "textual")
    values = np.load(folder / "values.npy")
    np.save(folder / "values.npy", values[::-1].copy())  # the rows reversed, same shape
    problems = check_store(dataset, "textual", load(extracted, "textual").post_ids)
    assert any("digest differs from the manifest's" in p for p in problems), problems
    with pytest.raises(MishonError, match="were changed after extraction"):
        load(dataset, "textual")
    assert check_store(extracted, "textual", load(extracted, "textual").post_ids) == []


def test_stores_cover_every_post_in_order(extracted: Path, tiny_corpus: tuple[Path, World]) -> None:
    _, world = tiny_corpus
    posts = read_posts(extracted)
    for modality, units, dim in (("visual", 2, 1280), ("acoustic", 4, 128), ("textual", 8, 384)):
        store = load(extracted, modality)
        assert store.post_ids == posts["post_id"].tolist()
        assert store.values.shape == (len(posts), units, dim) and store.values.dtype == np.float16
        assert (np.asarray(store.status) == DONE).all()
        assert check_store(extracted, modality, store.post_ids) == []
    truth = world.truth_posts
    acoustic = load(extracted, "acoustic")
    assert acoustic.mask.any(axis=1).tolist() == truth["has_sound"].tolist()
    textual = load(extracted, "textual")
    assert textual.mask.any(axis=1).tolist() == posts["caption"].notna().tolist()
    assert load(extracted, "visual").mask.all()
    assert acoustic.manifest["counts"] == {
        "done": 16,
        "absent": int((~truth["has_sound"]).sum()),
        "failed": 0,
        "pending": 0,
    }


def test_rerun_reuses_everything_and_other_settings_are_refused(extracted: Path) -> None:
    report = extract_features(extracted, FAST)
    assert all(info.computed == 0 and info.reused == 16 for info in report.modalities.values())
    other = FAST.model_copy(update={"textual": ExtractorSettings(name="minilm", units=4)})
    with pytest.raises(MishonError, match="pass --overwrite"):
        extract_features(extracted, other)


def test_overwrite_keeps_the_old_store_until_the_new_one_is_complete(
    tmp_path: Path, extracted: Path
) -> None:
    dataset = tmp_path / "ds"
    shutil.copytree(extracted, dataset)
    old = load(dataset, "textual").values.copy()
    other = FAST.model_copy(
        update={
            "visual": ExtractorSettings(name=None),
            "acoustic": ExtractorSettings(name=None),
            "textual": ExtractorSettings(name="minilm", units=4),
        }
    )

    class CrashesOnSecondBatch:
        def __init__(self, inner: object) -> None:
            self.inner, self.calls = inner, 0

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

        def encode(self, inputs: list[object]) -> object:
            self.calls += 1
            if self.calls == 2:
                raise KeyboardInterrupt  # as a kill half-way
            return self.inner.encode(inputs)  # type: ignore[attr-defined]

    from mishon.features.registry import create_extractor

    crashing = CrashesOnSecondBatch(create_extractor(Modality.TEXTUAL, other.textual, other))
    with pytest.raises(KeyboardInterrupt):
        extract_features(dataset, other, overwrite=True, extractors={Modality.TEXTUAL: crashing})
    kept = load(dataset, "textual")
    assert kept.manifest["units"] == 8 and np.array_equal(kept.values, old)
    assert (dataset / "features" / ".textual.partial").is_dir()
    report = extract_features(dataset, other, overwrite=True)
    assert report.modalities[Modality.TEXTUAL].computed == 12  # the first batch was kept
    assert load(dataset, "textual").manifest["units"] == 4
    assert sorted(p.name for p in (dataset / "features").iterdir()) == [
        "acoustic",
        "textual",
        "visual",
    ]


def test_broken_clip_is_a_recorded_failure(tmp_path: Path, tiny_corpus: tuple[Path, World]) -> None:
    dataset = copy_corpus(tiny_corpus[0], tmp_path / "ds")
    clip = dataset / "media" / "p000005.mp4"
    clip.write_bytes(clip.read_bytes()[:1500])
    posts = read_posts(dataset)
    posts.loc[7, "video"] = "../outside.mp4"
    write_table(posts, dataset / "posts.parquet", POSTS_SCHEMA)
    settings = FAST.model_copy(update={"textual": ExtractorSettings(name=None)})
    report = extract_features(dataset, settings)
    for modality in ("visual", "acoustic"):
        info = report.modalities[Modality(modality)]
        assert info.counts["failed"] == 2
        assert "p000005.mp4" in info.failures["p000005"]
        assert info.failures["p000007"] == "video path '../outside.mp4' leaves the dataset"
        store = load(dataset, modality)
        assert store.status[5] == FAILED and not store.mask[5].any()
    assert report.skipped == {Modality.TEXTUAL: "turned off"}
    retried = extract_features(dataset, settings.model_copy(update={"retry_failed": True}))
    # the two failed posts lie in batches 1 (posts 4-7); only that batch is redone
    assert retried.modalities[Modality.VISUAL].computed == 4


def test_dataset_without_video_skips_visual_and_acoustic(tmp_path: Path) -> None:
    dataset = tmp_path / "text"
    dataset.mkdir()
    posts = pd.DataFrame(
        {
            "post_id": ["a", "b"],
            "user_id": ["u", "v"],
            "hashtags": [["x"], []],
            "caption": ["hello", None],
        }
    )
    write_table(posts, dataset / "posts.parquet", POSTS_SCHEMA)
    report = extract_features(dataset, FAST)
    assert report.skipped == {
        Modality.VISUAL: "no post has a video",
        Modality.ACOUSTIC: "no post has a video",
    }
    assert load(dataset, "textual").mask.any(axis=1).tolist() == [True, False]


def test_sound_identity_stands_for_the_audio_track_of_posts_without_video(
    tmp_path: Path,
) -> None:
    dataset = tmp_path / "sounds"
    dataset.mkdir()
    posts = pd.DataFrame(
        {
            "post_id": ["a", "b", "c", "d"],
            "user_id": ["u", "v", "v", "w"],
            "hashtags": [["x"], [], ["y"], []],
            "sound": ["savage", "savage", "original sound@v", None],
        }
    )
    write_table(posts, dataset / "posts.parquet", POSTS_SCHEMA)
    report = extract_features(dataset, FAST)
    assert report.skipped == {
        Modality.VISUAL: "no post has a video",
        Modality.TEXTUAL: "no post has a caption",
    }
    assert "the sound's identity is used" in report.notes[0]
    store = load(dataset, "acoustic")
    assert store.manifest["extractor"] == "sound" and store.manifest["units"] == 1
    values = np.asarray(store.values, dtype=np.float32)[:, 0]
    assert store.mask[:, 0].tolist() == [True, True, True, False]
    np.testing.assert_array_equal(values[0], values[1])  # one sound, one vector
    assert abs(float(values[0] @ values[2])) < 0.3  # another sound: nearly orthogonal
    np.testing.assert_allclose(np.linalg.norm(values[:3], axis=1), 1.0, atol=1e-3)


def test_kill_and_resume_gives_the_same_arrays(
    tmp_path: Path, tiny_corpus: tuple[Path, World]
) -> None:
    reference = copy_corpus(tiny_corpus[0], tmp_path / "reference")
    settings = FAST.model_copy(update={"batch_size": 2})
    extract_features(reference, settings)

    killed = copy_corpus(tiny_corpus[0], tmp_path / "killed")
    command = [
        sys.executable,
        "-m",
        "mishon",
        "extract",
        str(killed),
        "--visual-units",
        "2",
        "--acoustic-units",
        "4",
        "--textual-units",
        "8",
        "--batch-size",
        "2",
        "--workers",
        "0",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    status_file = modality_dir(killed, "visual") / "status.npy"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if status_file.is_file():
                done = int((np.load(status_file) == DONE).sum())
                if 2 <= done < 16:
                    break
            assert process.poll() is None, "extraction finished before it could be killed"
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    partial = np.load(status_file)
    assert 0 < (partial == DONE).sum() < 16

    result = CliRunner().invoke(app, command[3:])
    assert result.exit_code == 0, result.output
    for modality in ("visual", "acoustic", "textual"):
        ours, theirs = load(killed, modality), load(reference, modality)
        np.testing.assert_array_equal(np.asarray(ours.values), np.asarray(theirs.values))
        np.testing.assert_array_equal(np.asarray(ours.mask), np.asarray(theirs.mask))
        np.testing.assert_array_equal(np.asarray(ours.status), np.asarray(theirs.status))


def test_features_import(tmp_path: Path, tiny_corpus: tuple[Path, World]) -> None:
    dataset = copy_corpus(tiny_corpus[0], tmp_path / "ds")
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3, 100)).astype(np.float32)
    np.save(tmp_path / "v.npy", vectors)
    (tmp_path / "ids.txt").write_text("p000004\np000001\np000009\n")
    report = import_vectors(dataset, Modality.TEXTUAL, tmp_path / "v.npy", tmp_path / "ids.txt")
    assert (report.matched, report.absent, report.units, report.dim) == (3, 13, 1, 100)
    store = load(dataset, "textual")
    np.testing.assert_allclose(store.values[4, 0], vectors[0].astype(np.float16))
    np.testing.assert_allclose(store.values[9, 0], vectors[2].astype(np.float16))
    assert store.mask[:, 0].tolist() == [i in (1, 4, 9) for i in range(16)]
    assert check_store(dataset, "textual", store.post_ids) == []

    (tmp_path / "bad_ids.txt").write_text("p000004\nzzz\np000004\n")
    with pytest.raises(InputError) as info:
        import_vectors(dataset, Modality.TEXTUAL, tmp_path / "v.npy", tmp_path / "bad_ids.txt")
    assert str(info.value) == f"{tmp_path / 'bad_ids.txt'}, line 3: 'p000004' also on line 1"
    (tmp_path / "unknown.txt").write_text("p000004\nzzz\np000001\n")
    with pytest.raises(InputError, match="line 2: 'zzz' is not a post"):
        import_vectors(dataset, Modality.TEXTUAL, tmp_path / "v.npy", tmp_path / "unknown.txt")
    skipped = import_vectors(
        dataset, Modality.TEXTUAL, tmp_path / "v.npy", tmp_path / "unknown.txt", skip_unknown=True
    )
    assert (skipped.matched, skipped.unknown) == (2, 1)
    (tmp_path / "two.txt").write_text("p000004\np000001\n")
    with pytest.raises(MishonError, match=r"lists 2 post ids but .* has 3 rows"):
        import_vectors(dataset, Modality.TEXTUAL, tmp_path / "v.npy", tmp_path / "two.txt")
    vectors[1, 5] = np.nan
    np.save(tmp_path / "nan.npy", vectors)
    with pytest.raises(InputError, match="row 2: holds NaN"):
        import_vectors(dataset, Modality.TEXTUAL, tmp_path / "nan.npy", tmp_path / "ids.txt")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}] * 3, dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match=r"cannot read as a numeric \.npy array"):
        import_vectors(dataset, Modality.TEXTUAL, tmp_path / "objects.npy", tmp_path / "ids.txt")


def test_cli_extract_with_tiny_transformers_models(
    tmp_path: Path, tiny_corpus: tuple[Path, World], tiny_models: dict[str, Path]
) -> None:
    dataset = copy_corpus(tiny_corpus[0], tmp_path / "ds")
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "extract",
            str(dataset),
            "--visual",
            "vit",
            "--visual-model",
            str(tiny_models["vit"]),
            "--acoustic",
            "wav2vec2",
            "--acoustic-model",
            str(tiny_models["wav2vec2"]),
            "--textual",
            "bert",
            "--textual-model",
            str(tiny_models["bert"]),
            "--workers",
            "1",
            "--visual-units",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    assert load(dataset, "visual").values.shape == (16, 3, 32)
    assert load(dataset, "textual").manifest["model_id"] == str(tiny_models["bert"])
    check = runner.invoke(app, ["features", "validate", str(dataset)])
    assert check.exit_code == 0 and "valid" in check.output


POOL_THEN_SLEEP = """
import os, sys, time
from mishon.processes import worker_pool

pool = worker_pool(2)
pids = {pool.submit(os.getpid).result() for _ in range(8)}
for f in [pool.submit(time.sleep, 0.5) for _ in range(2)]:
    f.result()
print(" ".join(map(str, sorted({pool.submit(os.getpid).result() for _ in range(8)}))), flush=True)
time.sleep(60)
"""


def test_workers_end_with_a_killed_parent() -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", POOL_THEN_SLEEP], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        workers = [int(pid) for pid in process.stdout.readline().split()]
        assert workers
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    deadline = time.monotonic() + 10
    alive = workers
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [pid for pid in alive if Path(f"/proc/{pid}").exists() and not _zombie(pid)]
    assert not alive, f"workers {alive} outlived their killed parent"


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except OSError:
        return False


def test_ray_engine_writes_the_local_engines_arrays(
    tmp_path: Path, extracted: Path, tiny_corpus: tuple[Path, World]
) -> None:
    pytest.importorskip("ray")
    dataset = copy_corpus(tiny_corpus[0], tmp_path / "ds")
    settings = FAST.model_copy(update={"engine": "ray", "ray_actors": 2})
    done = []
    report = extract_features(dataset, settings, progress=done.append)
    assert sum(done) == 16 and all(info.computed == 16 for info in report.modalities.values())
    for modality in ("visual", "acoustic", "textual"):
        ours, theirs = load(dataset, modality), load(extracted, modality)
        np.testing.assert_array_equal(np.asarray(ours.values), np.asarray(theirs.values))
        np.testing.assert_array_equal(np.asarray(ours.mask), np.asarray(theirs.mask))
        np.testing.assert_array_equal(np.asarray(ours.status), np.asarray(theirs.status))
    assert extract_features(dataset, settings).modalities[Modality.VISUAL].computed == 0
