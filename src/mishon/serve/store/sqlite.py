"""The embedded record store: one SQLite file, nothing to set up.

Several processes on one host may share the file (`mishon serve --workers N`): it is opened in
WAL mode, writers wait up to `busy_timeout_s` for each other, and a commit is synced before it
returns (`synchronous=FULL`), so an acknowledged post survives a crash of the process or the
host. `seq` is SQLite's rowid, which grows with every insert: commit order.

The version-1 schema is the one the service has always written (`service.sqlite` inside a run
directory before the store existed), so such a file opens as a store at version 1.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from mishon.errors import MishonError
from mishon.serve.store.base import (
    DamagedRecord,
    DuplicatePost,
    Migration,
    RecordStore,
    StoredPost,
    StoreUnavailable,
    Units,
    assemble,
    check_version,
    new_post_id,
    now,
    unit_rows,
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "posts and their units",
        (
            """CREATE TABLE IF NOT EXISTS posts (
                post_id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL,
                caption TEXT,
                hashtags TEXT NOT NULL,
                created_at REAL NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS posts_user ON posts (user_id)",
            "CREATE INDEX IF NOT EXISTS posts_time ON posts (created_at)",
            """CREATE TABLE IF NOT EXISTS units (
                post_id TEXT NOT NULL REFERENCES posts (post_id),
                modality TEXT NOT NULL,
                units BLOB NOT NULL,
                mask BLOB NOT NULL,
                PRIMARY KEY (post_id, modality)
            )""",
        ),
    ),
    Migration(2, "the sound of a post", ("ALTER TABLE posts ADD COLUMN sound TEXT",)),
)


class SQLiteStore(RecordStore):
    """Recorded posts in the SQLite file at `path` (created, with its folder, if missing)."""

    def __init__(
        self,
        path: Path,
        busy_timeout_s: float = 10.0,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=busy_timeout_s, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._migrate(migrations)
        except sqlite3.DatabaseError as exc:
            raise MishonError(
                f"record store {path} cannot be opened ({exc}): if the file is damaged, move "
                "it aside and start with an empty store (recorded posts are lost unless a "
                "backup exists), or point --db / --state-dir elsewhere"
            ) from None

    def _migrate(self, migrations: Sequence[Migration]) -> None:
        with self._lock, self._db:  # one transaction: a migration is whole or not at all
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                "name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
            for migration in check_version(self.url, self._version(), migrations):
                for statement in migration.statements:
                    self._db.execute(statement)
                self._db.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                    (migration.version, migration.name, now()),
                )

    def _version(self) -> int:
        row = self._db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    def add(
        self,
        user_id: str,
        hashtags: list[str],
        caption: str | None,
        post_id: str | None,
        units: Units | None = None,
        sound: str | None = None,
    ) -> StoredPost:
        post_id = post_id or new_post_id()
        created = now()
        try:
            with self._lock, self._db:
                cursor = self._db.execute(
                    "INSERT INTO posts (post_id, user_id, caption, hashtags, created_at, sound) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (post_id, user_id, caption, json.dumps(hashtags), created, sound),
                )
                self._db.executemany(
                    "INSERT INTO units VALUES (?, ?, ?, ?)",
                    unit_rows(post_id, units),
                )
                seq = int(cursor.lastrowid or 0)
        except sqlite3.IntegrityError:
            raise DuplicatePost(f"post {post_id!r} is already recorded") from None
        except sqlite3.OperationalError as exc:  # locked past the timeout, disk full, ...
            raise StoreUnavailable(f"record store {self.path}: {exc}; nothing recorded") from None
        return StoredPost(
            seq, post_id, user_id, caption, list(hashtags), created, dict(units or {}), sound
        )

    def since(self, seq: int, limit: int = 10_000) -> list[StoredPost | DamagedRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT rowid, post_id, user_id, caption, hashtags, created_at, sound FROM posts "
                "WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (seq, limit),
            ).fetchall()
            if not rows:
                return []
            stored_units = self._db.execute(
                "SELECT u.post_id, u.modality, u.units, u.mask FROM units u "
                "JOIN posts p ON p.post_id = u.post_id WHERE p.rowid > ? AND p.rowid <= ?",
                (seq, rows[-1][0]),
            ).fetchall()
        return assemble(rows, stored_units)

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM posts").fetchone()[0])

    def schema_version(self) -> int:
        with self._lock:
            return self._version()

    def close(self) -> None:
        with self._lock:
            self._db.close()
