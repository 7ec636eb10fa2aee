from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mishon.data.schema import POSTS_SCHEMA, SPLIT_SCHEMA
from mishon.data.store import read_posts, write_table
from mishon.data.synth import World
from mishon.data.validate import validate_dataset
from mishon.media.probe import probe_video


@pytest.fixture
def dataset(tmp_path: Path, tiny_corpus: tuple[Path, World]) -> Path:
    out = tmp_path / "ds"
    shutil.copytree(tiny_corpus[0], out)
    return out


def rewrite(root: Path, change: dict[tuple[int, str], object]) -> None:
    posts = read_posts(root)
    for (row, field), value in change.items():
        posts.at[row, field] = value
    write_table(posts, root / "posts.parquet", POSTS_SCHEMA)


def messages(root: Path, probe: bool = False) -> list[str]:
    return [str(p) for p in validate_dataset(root, probe_video if probe else None)]


def test_valid_corpus_passes_with_media_probe(dataset: Path) -> None:
    assert messages(dataset, probe=True) == []


@pytest.mark.parametrize(
    ("row", "field", "value", "expected"),
    [
        (1, "post_id", "p000000", "row 2 (post_id 'p000000'), field 'post_id': also at row 1"),
        (
            2,
            "hashtags",
            ["Food"],
            "row 3 (post_id 'p000002'), field 'hashtags': ['Food'] not normalised",
        ),
        (2, "hashtags", ["a", "a"], "field 'hashtags': repeats a hashtag"),
        (
            3,
            "caption",
            "nice #beach day",
            "row 4 (post_id 'p000003'), field 'caption': holds hashtags",
        ),
        (4, "likes", -2, "row 5 (post_id 'p000004'), field 'likes': must be >= 0, got -2"),
        (5, "user_id", "", "row 6 (post_id 'p000005'), field 'user_id': is empty"),
        (6, "video", "../escape.mp4", "field 'video': '../escape.mp4' must be relative, inside"),
        (6, "video", "media/none.mp4", "field 'video': 'media/none.mp4' not found"),
        (
            6,
            "video",
            "media/p000006.gif",
            "field 'video': 'media/p000006.gif': unsupported extension",
        ),
    ],
)
def test_each_violation_is_named(
    dataset: Path, row: int, field: str, value: object, expected: str
) -> None:
    rewrite(dataset, {(row, field): value})
    found = messages(dataset)
    assert len(found) == 1, found
    assert expected in found[0]
    assert found[0].startswith(str(dataset / "posts.parquet"))


def test_corrupt_video_found_by_probe(dataset: Path) -> None:
    clip = dataset / "media" / "p000001.mp4"
    clip.write_bytes(clip.read_bytes()[:300])
    assert messages(dataset) == []  # existence check alone cannot see it
    (found,) = messages(dataset, probe=True)
    assert "row 2 (post_id 'p000001'), field 'video'" in found and "'media/p000001.mp4'" in found


def test_missing_and_unknown_columns(dataset: Path) -> None:
    table = pq.read_table(dataset / "posts.parquet")
    pq.write_table(
        table.drop(["user_id"]).append_column("mood", pa.array(["x"] * len(table))),
        dataset / "posts.parquet",
    )
    found = messages(dataset)
    assert any("field 'user_id': required column missing" in m for m in found)
    assert any("field 'mood': not part of the format" in m for m in found)


def test_wrong_type(dataset: Path) -> None:
    table = pq.read_table(dataset / "posts.parquet")
    likes = pa.array([str(v) for v in table["likes"].to_pylist()])
    pq.write_table(
        table.set_column(table.schema.get_field_index("likes"), "likes", likes),
        dataset / "posts.parquet",
    )
    (found,) = messages(dataset)
    assert "field 'likes': has type string, expected int64" in found


def test_stale_split_is_reported(dataset: Path) -> None:
    posts = read_posts(dataset)
    split = pd.DataFrame({"post_id": posts["post_id"][:-1], "split": "train"})
    (dataset / "splits").mkdir()
    write_table(split, dataset / "splits" / "old.parquet", SPLIT_SCHEMA)
    (found,) = messages(dataset)
    assert "old.parquet, field 'post_id': covers 15 of 16 posts" in found


def test_not_a_dataset(tmp_path: Path) -> None:
    (found,) = messages(tmp_path)
    assert found == f"{tmp_path / 'posts.parquet'}: posts table not found"
