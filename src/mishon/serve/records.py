"""Posts accepted through the service, kept in SQLite under the run directory.

They keep user histories and popularity current between retrainings: the service blends the
model's scores with the hashtags each user (and everybody, recently) recorded since training.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS posts (
    post_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    caption TEXT,
    hashtags TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS posts_user ON posts (user_id);
CREATE INDEX IF NOT EXISTS posts_time ON posts (created_at);
"""


class PostRecords:
    """A thread-safe SQLite table of recorded posts."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False)
        with self._lock, self._db:
            self._db.executescript(SCHEMA)

    def add(
        self, user_id: str, hashtags: list[str], caption: str | None, post_id: str | None
    ) -> str:
        """Record a post; returns its id. A repeated post_id is a ValueError."""
        post_id = post_id or uuid.uuid4().hex
        try:
            with self._lock, self._db:
                self._db.execute(
                    "INSERT INTO posts VALUES (?, ?, ?, ?, ?)",
                    (post_id, user_id, caption, json.dumps(hashtags), time.time()),
                )
        except sqlite3.IntegrityError:
            raise ValueError(f"post {post_id!r} is already recorded") from None
        return post_id

    def _counts(self, query: str, args: tuple[object, ...]) -> Counter[str]:
        with self._lock:
            rows = self._db.execute(query, args).fetchall()
        return Counter(tag for (tags,) in rows for tag in json.loads(tags))

    def user_counts(self, user_id: str) -> Counter[str]:
        return self._counts("SELECT hashtags FROM posts WHERE user_id = ?", (user_id,))

    def recent_counts(self, limit: int = 1000) -> Counter[str]:
        return self._counts("SELECT hashtags FROM posts ORDER BY created_at DESC LIMIT ?", (limit,))

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM posts").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
