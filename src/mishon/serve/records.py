"""Posts accepted through the service, kept in SQLite under the run directory.

They join the service's known posts (their users' histories, popularity, and by their
caption's place the posts similar ones draw hashtags from) between retrainings. Each post's
extracted units are kept beside it (`.npy` bytes, read without pickle), so a restarted
service places the recorded posts again without running the extractors.
"""

from __future__ import annotations

import io
import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

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
CREATE TABLE IF NOT EXISTS units (
    post_id TEXT NOT NULL REFERENCES posts (post_id),
    modality TEXT NOT NULL,
    units BLOB NOT NULL,
    mask BLOB NOT NULL,
    PRIMARY KEY (post_id, modality)
);
"""
Units = dict[str, tuple[np.ndarray, np.ndarray]]  # modality -> (values [L, D], mask [L])


def _to_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _from_bytes(blob: bytes) -> np.ndarray:
    return np.load(io.BytesIO(blob), allow_pickle=False)


class PostRecords:
    """A thread-safe SQLite table of recorded posts."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False)
        with self._lock, self._db:
            self._db.executescript(SCHEMA)

    def add(
        self,
        user_id: str,
        hashtags: list[str],
        caption: str | None,
        post_id: str | None,
        units: Units | None = None,
    ) -> str:
        """Record a post and its extracted units, in one transaction; returns its id. A
        repeated post_id is a ValueError."""
        post_id = post_id or uuid.uuid4().hex
        try:
            with self._lock, self._db:
                self._db.execute(
                    "INSERT INTO posts VALUES (?, ?, ?, ?, ?)",
                    (post_id, user_id, caption, json.dumps(hashtags), time.time()),
                )
                self._db.executemany(
                    "INSERT INTO units VALUES (?, ?, ?, ?)",
                    [
                        (post_id, modality, _to_bytes(values), _to_bytes(mask))
                        for modality, (values, mask) in (units or {}).items()
                    ],
                )
        except sqlite3.IntegrityError:
            raise ValueError(f"post {post_id!r} is already recorded") from None
        return post_id

    def all(self) -> list[dict[str, Any]]:
        """Every recorded post, oldest first: post_id, user_id, caption, hashtags, and units
        (None where none were kept: no caption, or recorded before units were kept)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT post_id, user_id, caption, hashtags FROM posts ORDER BY created_at, rowid"
            ).fetchall()
            stored = self._db.execute("SELECT post_id, modality, units, mask FROM units").fetchall()
        units: dict[str, Units] = {}
        for post_id, modality, values, mask in stored:
            units.setdefault(post_id, {})[modality] = (_from_bytes(values), _from_bytes(mask))
        return [
            {
                "post_id": p,
                "user_id": u,
                "caption": c,
                "hashtags": json.loads(h),
                "units": units.get(p),
            }
            for p, u, c, h in rows
        ]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM posts").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
