"""The record store: one suite, run against both backends (SQLite and a real PostgreSQL)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import numpy as np
import pytest

from mishon.errors import MishonError
from mishon.serve.store import (
    DamagedRecord,
    DuplicatePost,
    RecordStore,
    StoredPost,
    open_store,
)
from mishon.serve.store.base import Migration

from .postgres_server import fresh_database

_databases = count()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'records.sqlite'}"
    server = request.getfixturevalue("postgres_url")
    return fresh_database(server, f"store{next(_databases)}")


@pytest.fixture
def store(store_url: str) -> Iterator[RecordStore]:
    opened = open_store(store_url)
    yield opened
    opened.close()


def _units(seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    values = rng.standard_normal((3, 4)).astype(np.float32)
    return {"textual": (values, np.array([True, True, False]))}


def test_a_recorded_post_reads_back_with_its_units_in_commit_order(store: RecordStore) -> None:
    first = store.add("u1", ["beach", "sun"], "a day out", None, _units(0))
    second = store.add("u2", ["cat"], None, "p2")
    assert second.seq > first.seq and len(first.post_id) == 32 and second.post_id == "p2"
    back = store.since(0)
    assert [p.post_id for p in back] == [first.post_id, "p2"]
    post = back[0]
    assert isinstance(post, StoredPost) and post.hashtags == ["beach", "sun"]
    assert post.caption == "a day out" and post.user_id == "u1"
    values, mask = post.units["textual"]
    np.testing.assert_array_equal(values, _units(0)["textual"][0])
    assert mask.tolist() == [True, True, False] and values.dtype == np.float32
    assert back[1].units == {} and back[1].caption is None
    assert [p.post_id for p in store.since(first.seq)] == ["p2"]
    assert store.since(second.seq) == [] and store.count() == 2
    assert [p.seq for p in store.since(0, limit=1)] == [first.seq]


def test_a_repeated_post_id_is_refused_and_nothing_half_written(store: RecordStore) -> None:
    store.add("u1", ["a"], None, "same", _units(1))
    with pytest.raises(DuplicatePost, match="'same' is already recorded"):
        store.add("u2", ["b"], None, "same", _units(2))
    (only,) = store.all()
    assert only.user_id == "u1" and store.count() == 1


def test_all_pages_through_every_record(store: RecordStore) -> None:
    for i in range(25):
        store.add(f"u{i}", [f"t{i}"], None, f"p{i}")
    assert [p.post_id for p in store.all()] == [f"p{i}" for i in range(25)]


def test_concurrent_writers_each_get_their_own_seq_and_a_reader_misses_none(
    store_url: str,
) -> None:
    """Two connections writing at once; a third follows with `since` while they write and
    must end with every post exactly once (commit order is seq order)."""
    writers = [open_store(store_url), open_store(store_url)]
    reader = open_store(store_url)
    seen: list[int] = []
    done = threading.Event()

    def write(store: RecordStore, name: str) -> None:
        for i in range(30):
            store.add(name, [f"t{i}"], None, f"{name}-{i}")

    def follow() -> None:
        while True:
            finished = done.is_set()
            for post in reader.since(seen[-1] if seen else 0):
                seen.append(post.seq)
            if finished:
                return

    threads = [threading.Thread(target=write, args=(s, f"w{i}")) for i, s in enumerate(writers)]
    follower = threading.Thread(target=follow)
    follower.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    follower.join()
    assert len(seen) == 60 == len(set(seen)) and seen == sorted(seen)
    assert reader.count() == 60
    for opened in (*writers, reader):
        opened.close()


def test_schema_versions_migrate_once_and_a_newer_store_is_refused(store_url: str) -> None:
    from mishon.serve.store import postgres
    from mishon.serve.store import sqlite as embedded

    sqlite = store_url.startswith("sqlite")
    module = embedded if sqlite else postgres
    backend = module.SQLiteStore if sqlite else module.PostgresStore
    target: object = Path(store_url.removeprefix("sqlite:///")) if sqlite else store_url
    # a store of version 1 (before posts kept their sound) with one post
    first = backend(target, migrations=module.MIGRATIONS[:1])  # type: ignore[call-arg]
    assert first.schema_version() == 1
    first.close()
    with sqlite3.connect(target) if sqlite else _postgres(store_url) as db:  # type: ignore[arg-type]
        db.execute(
            "INSERT INTO posts (post_id, user_id, caption, hashtags, created_at) "
            """VALUES ('p1', 'u1', NULL, '["a"]', 1.0)"""
        )
    # this MISHON migrates it to version 2: the old post reads back, a new one keeps its sound
    current = open_store(store_url)
    assert current.schema_version() == 2
    current.add("u2", ["b"], None, "p2", sound="song@u2")
    old, new = current.all()
    assert (old.post_id, old.sound) == ("p1", None) and (new.post_id, new.sound) == (
        "p2",
        "song@u2",
    )
    current.close()
    step = Migration(3, "a column for tests", ("ALTER TABLE posts ADD COLUMN note TEXT",))
    upgraded = backend(target, migrations=(*module.MIGRATIONS, step))  # type: ignore[call-arg]
    assert upgraded.schema_version() == 3 and len(upgraded.all()) == 2
    upgraded.close()
    again = backend(target, migrations=(*module.MIGRATIONS, step))  # type: ignore[call-arg]
    assert again.schema_version() == 3  # not run twice (the ALTER would fail)
    again.close()
    with pytest.raises(MishonError, match="schema version 3; this MISHON knows versions up to 2"):
        open_store(store_url)


def _postgres(url: str) -> object:
    import psycopg

    return psycopg.connect(url, autocommit=True)


def test_a_damaged_record_is_reported_and_the_others_load(store: RecordStore) -> None:
    store.add("u1", ["a"], None, "good", _units(3))
    store.add("u2", ["b"], None, "bad-units", _units(4))
    store.add("u3", ["c"], None, "bad-tags")
    _corrupt(store, "UPDATE units SET units = {blob} WHERE post_id = 'bad-units'")
    _corrupt(store, """UPDATE posts SET hashtags = '[1,{"a":2}]' WHERE post_id = 'bad-tags'""")
    good, units, tags = store.all()
    assert isinstance(good, StoredPost) and good.post_id == "good"
    assert isinstance(units, DamagedRecord) and units.field == "units"
    assert isinstance(tags, DamagedRecord) and tags.field == "hashtags"
    assert "'bad-tags'" in str(tags) and "other than non-empty strings" in str(tags)


def _corrupt(store: RecordStore, statement: str) -> None:
    if store.url.startswith("sqlite"):
        db = sqlite3.connect(store.url.removeprefix("sqlite:///"))
        with db:
            db.execute(statement.replace("{blob}", "X'00ff00'"))
        db.close()
        return
    import psycopg

    with psycopg.connect(store._dsn, autocommit=True) as db:  # type: ignore[attr-defined]
        db.execute(statement.replace("{blob}", "'\\x00ff00'::bytea"))


def test_a_store_from_before_the_store_opens_with_its_posts(tmp_path: Path) -> None:
    """service.sqlite as the service wrote it inside a run directory before versions."""
    legacy = tmp_path / "service.sqlite"
    db = sqlite3.connect(legacy)
    db.executescript(
        "CREATE TABLE posts (post_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, caption TEXT, "
        "hashtags TEXT NOT NULL, created_at REAL NOT NULL);"
        "CREATE TABLE units (post_id TEXT NOT NULL REFERENCES posts (post_id), modality TEXT "
        "NOT NULL, units BLOB NOT NULL, mask BLOB NOT NULL, PRIMARY KEY (post_id, modality));"
        """INSERT INTO posts VALUES ('old', 'u9', 'hi', '["x"]', 1.0);"""
    )
    db.commit()
    db.close()
    store = open_store(str(legacy))
    # opened as version 1, migrated to the newest (a post's sound)
    assert store.schema_version() == 2 and [p.post_id for p in store.all()] == ["old"]
    assert store.all()[0].sound is None
    store.close()


def test_a_damaged_store_file_names_the_way_to_recover(tmp_path: Path) -> None:
    path = tmp_path / "records.sqlite"
    store = open_store(str(path))
    store.add("u1", ["a"], None, "p1")
    store.close()
    path.write_bytes(path.read_bytes()[:100])
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    with pytest.raises(MishonError, match=r"cannot be opened .* move it aside"):
        open_store(str(path))


def test_unknown_store_urls_are_refused() -> None:
    with pytest.raises(MishonError, match=r"mysql://\.\.\.: not a store this MISHON knows"):
        open_store("mysql://x@y/z")


def test_the_password_never_shows_in_the_store_url(postgres_url: str) -> None:
    from mishon.serve.store.postgres import public_url

    assert public_url("postgresql://me:secret@db:5432/x") == "postgresql://me:***@db:5432/x"
    with pytest.raises(MishonError) as caught:
        open_store("postgresql://me:secret@127.0.0.1:1/none")
    assert "secret" not in str(caught.value) and "cannot be reached" in str(caught.value)
