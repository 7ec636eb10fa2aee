"""The shared record store: PostgreSQL, for replicas on any number of hosts.

`seq` is a BIGSERIAL, and every insert takes one transaction-level advisory lock before it
draws its number, so posts commit in `seq` order: a replica that reads what came after the
last `seq` it saw can never skip a post that committed late with a smaller number. Writes are
serialised by that lock (a few milliseconds each); reads are not. Migrations run under a
session-level advisory lock, so replicas that start together migrate once.

The connection is opened again once when it was lost (a database restart); a post is
acknowledged only after its transaction committed.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

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
                seq BIGSERIAL PRIMARY KEY,
                post_id TEXT NOT NULL UNIQUE,
                user_id TEXT NOT NULL,
                caption TEXT,
                hashtags TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS posts_user ON posts (user_id)",
            "CREATE INDEX IF NOT EXISTS posts_time ON posts (created_at)",
            """CREATE TABLE IF NOT EXISTS units (
                post_id TEXT NOT NULL REFERENCES posts (post_id),
                modality TEXT NOT NULL,
                units BYTEA NOT NULL,
                mask BYTEA NOT NULL,
                PRIMARY KEY (post_id, modality)
            )""",
        ),
    ),
    Migration(2, "the sound of a post", ("ALTER TABLE posts ADD COLUMN sound TEXT",)),
)
INSERT_LOCK = 0x4D495348  # advisory lock key of inserts ("MISH")
MIGRATE_LOCK = 0x4D49534D  # advisory lock key of migrations
T = TypeVar("T")


def public_url(url: str) -> str:
    """`url` without its password, fit for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ""
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, ""))


class PostgresStore(RecordStore):
    """Recorded posts in the PostgreSQL database at `url` (postgresql://user@host:port/db)."""

    def __init__(
        self,
        url: str,
        connect_timeout_s: float = 10.0,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        try:
            import psycopg
        except ImportError:
            raise MishonError(
                "a PostgreSQL store needs psycopg: pip install 'mishon[postgres]'"
            ) from None
        self._psycopg = psycopg
        self._dsn = url
        self.url = public_url(url)
        self._timeout = connect_timeout_s
        self._lock = threading.Lock()
        self._db: Any = None
        self._run(lambda db: self._migrate(db, migrations))

    def _connect(self) -> Any:
        try:
            return self._psycopg.connect(
                self._dsn, connect_timeout=max(1, round(self._timeout)), autocommit=False
            )
        except self._psycopg.Error as exc:
            raise StoreUnavailable(f"record store {self.url} cannot be reached: {exc}") from None

    def _run(self, work: Callable[[Any], T], retry: bool = True) -> T:
        """`work(connection)` in one transaction, rolled back on any error. A lost connection
        (a database restart) is opened again; the work is tried once more when `retry` (reads:
        a write whose commit may have happened is not sent twice, the caller is told)."""
        with self._lock:
            for attempt in (1, 2):
                if self._db is None or self._db.closed:
                    self._db = self._connect()
                try:
                    with self._db.transaction():
                        return work(self._db)
                except self._psycopg.OperationalError as exc:
                    self._db.close()
                    self._db = None
                    if attempt == 2 or not retry:
                        raise StoreUnavailable(f"record store {self.url}: {exc}") from None
        raise AssertionError("unreachable")

    def _migrate(self, db: Any, migrations: Sequence[Migration]) -> None:
        db.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
            "name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
        )
        for migration in check_version(self.url, self._version(db), migrations):
            for statement in migration.statements:
                db.execute(statement)
            db.execute(
                "INSERT INTO schema_migrations VALUES (%s, %s, %s)",
                (migration.version, migration.name, now()),
            )

    @staticmethod
    def _version(db: Any) -> int:
        row = db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
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

        def insert(db: Any) -> int:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (INSERT_LOCK,))
            row = db.execute(
                "INSERT INTO posts (post_id, user_id, caption, hashtags, created_at, sound) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (post_id) DO NOTHING RETURNING seq",
                (post_id, user_id, caption, json.dumps(hashtags), created, sound),
            ).fetchone()
            if row is None:
                raise DuplicatePost(f"post {post_id!r} is already recorded")
            with db.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO units VALUES (%s, %s, %s, %s)",
                    unit_rows(post_id, units),
                )
            return int(row[0])

        seq = self._run(insert, retry=False)
        return StoredPost(
            seq, post_id, user_id, caption, list(hashtags), created, dict(units or {}), sound
        )

    def since(self, seq: int, limit: int = 10_000) -> list[StoredPost | DamagedRecord]:
        def read(db: Any) -> tuple[list[Any], list[Any]]:
            rows = db.execute(
                "SELECT seq, post_id, user_id, caption, hashtags, created_at, sound FROM posts "
                "WHERE seq > %s ORDER BY seq LIMIT %s",
                (seq, limit),
            ).fetchall()
            if not rows:
                return [], []
            units = db.execute(
                "SELECT u.post_id, u.modality, u.units, u.mask FROM units u "
                "JOIN posts p ON p.post_id = u.post_id WHERE p.seq > %s AND p.seq <= %s",
                (seq, rows[-1][0]),
            ).fetchall()
            return rows, units

        rows, stored_units = self._run(read)
        return assemble(rows, stored_units)

    def count(self) -> int:
        return self._run(lambda db: int(db.execute("SELECT COUNT(*) FROM posts").fetchone()[0]))

    def schema_version(self) -> int:
        return self._run(self._version)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
