"""Where the service keeps recorded posts: one interface (`RecordStore`), two backends.

`open_store(url)`: `sqlite:///path/file.sqlite` (or a plain path) for the embedded SQLite
store, `postgresql://user@host:port/db` for a PostgreSQL store that replicas share.
"""

from __future__ import annotations

from pathlib import Path

from mishon.errors import MishonError
from mishon.serve.store.base import (
    DamagedRecord,
    DuplicatePost,
    RecordStore,
    StoredPost,
    StoreUnavailable,
    Units,
)

__all__ = [
    "DamagedRecord",
    "DuplicatePost",
    "RecordStore",
    "StoreUnavailable",
    "StoredPost",
    "Units",
    "open_store",
]


def open_store(url: str) -> RecordStore:
    """The record store at `url`, migrated to this code's schema."""
    if url.startswith(("postgresql://", "postgres://")):
        from mishon.serve.store.postgres import PostgresStore

        return PostgresStore(url)
    if url.startswith("sqlite:///"):
        url = url.removeprefix("sqlite:///")
    elif "://" in url:
        raise MishonError(
            f"record store {url.split('://')[0]}://...: not a store this MISHON knows; use "
            "sqlite:///PATH or postgresql://USER@HOST:PORT/DB"
        )
    from mishon.serve.store.sqlite import SQLiteStore

    return SQLiteStore(Path(url))
