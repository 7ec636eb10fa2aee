"""What every record store keeps and how: recorded posts, their units, and schema versions.

A recorded post is a post published through the service with the hashtags its author chose,
kept with the units its extractors gave (video and caption), so any replica, started at any
time, places it again without extractors. Every post has a sequence number `seq` in the
order the store committed it: replicas follow the store by asking for what came after the
last `seq` they took in (`since`). Units travel as `.npy` bytes, read without pickle.

A record that cannot be read back (a damaged blob, hashtags that are not a list of strings)
is returned as a `DamagedRecord` naming the post and the field, never raised: one bad record
must not keep a service from starting with the others.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mishon.errors import MishonError

Units = dict[str, tuple[np.ndarray, np.ndarray]]  # modality -> (values [L, D], mask [L])


class DuplicatePost(ValueError):
    """A post_id that is already recorded."""


class StoreUnavailable(MishonError):
    """The store cannot be reached or did not commit: nothing was recorded."""


@dataclass(frozen=True)
class Migration:
    """One step of a backend's schema: its version, a name, and what it runs."""

    version: int
    name: str
    statements: tuple[str, ...]


@dataclass
class StoredPost:
    """A recorded post as the store returns it."""

    seq: int
    post_id: str
    user_id: str
    caption: str | None
    hashtags: list[str]
    created_at: float
    units: Units = field(default_factory=dict)
    sound: str | None = None  # the sound's identity (`data.sounds`)


@dataclass(frozen=True)
class DamagedRecord:
    """A record that cannot be read back: which post, which field, why."""

    seq: int
    post_id: str
    field: str
    reason: str

    def __str__(self) -> str:
        where = f"recorded post {self.post_id!r} (seq {self.seq}), field '{self.field}'"
        return f"{where}: {self.reason}"


def units_to_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def unit_rows(post_id: str, units: Units | None) -> list[tuple[str, str, bytes, bytes]]:
    """A post's units as rows of the units table: (post_id, modality, values, mask)."""
    return [
        (post_id, modality, units_to_bytes(values), units_to_bytes(mask))
        for modality, (values, mask) in (units or {}).items()
    ]


def _array(blob: bytes) -> np.ndarray:
    return np.load(io.BytesIO(bytes(blob)), allow_pickle=False)


def read_hashtags(text: str) -> list[str]:
    """The stored JSON list of hashtags; ValueError unless a non-empty list of strings."""
    hashtags = json.loads(text)
    if not isinstance(hashtags, list) or not hashtags:
        raise ValueError("not a non-empty JSON list")
    if not all(isinstance(tag, str) and tag for tag in hashtags):
        raise ValueError("holds something other than non-empty strings")
    return hashtags


def read_units(modality: str, values: bytes, mask: bytes) -> tuple[np.ndarray, np.ndarray]:
    """One modality's stored (values [L, D] float32, mask [L] bool); ValueError if damaged."""
    units, present = _array(values), _array(mask)
    if units.ndim != 2 or units.dtype.kind != "f":
        raise ValueError(f"{modality} units: not a 2-D float array ({units.dtype}, {units.shape})")
    if present.shape != (units.shape[0],):
        raise ValueError(f"{modality} mask: shape {present.shape} for {units.shape[0]} units")
    if not np.isfinite(units).all():
        raise ValueError(f"{modality} units: not finite")
    return units.astype(np.float32), present.astype(bool)


def assemble(
    rows: Sequence[tuple[Any, ...]], unit_records: Sequence[tuple[Any, ...]]
) -> list[StoredPost | DamagedRecord]:
    """Posts (seq, post_id, user_id, caption, hashtags, created_at, sound) with their unit
    rows (post_id, modality, units, mask), each read back or reported damaged."""
    units: dict[str, list[tuple[str, bytes, bytes]]] = {}
    for post_id, modality, values, mask in unit_records:
        units.setdefault(post_id, []).append((modality, values, mask))
    out: list[StoredPost | DamagedRecord] = []
    for seq, post_id, user_id, caption, hashtags, created_at, sound in rows:
        where = "hashtags"
        try:
            tags = read_hashtags(hashtags)
            where = "units"
            post_units = {m: read_units(m, v, k) for m, v, k in units.get(post_id, [])}
        except Exception as exc:  # any damage to one record is that record's alone
            out.append(DamagedRecord(int(seq), str(post_id), where, str(exc) or type(exc).__name__))
            continue
        out.append(
            StoredPost(
                int(seq), post_id, user_id, caption, tags, float(created_at), post_units, sound
            )
        )
    return out


class RecordStore(ABC):
    """Recorded posts, shared by every replica pointed at the same store.

    `add` returns only once the post is committed (nothing is acknowledged before); `since`
    returns committed posts in commit order, so a replica that takes in everything after the
    last `seq` it saw misses none.
    """

    url: str  # where it is, without a password

    @abstractmethod
    def add(
        self,
        user_id: str,
        hashtags: list[str],
        caption: str | None,
        post_id: str | None,
        units: Units | None = None,
        sound: str | None = None,
    ) -> StoredPost:
        """Record a post, its units and its sound's identity in one transaction;
        DuplicatePost for a known id, StoreUnavailable when the store could not commit it."""

    @abstractmethod
    def since(self, seq: int, limit: int = 10_000) -> list[StoredPost | DamagedRecord]:
        """Up to `limit` records committed after `seq`, in commit order."""

    @abstractmethod
    def count(self) -> int:
        """How many posts are recorded."""

    @abstractmethod
    def schema_version(self) -> int:
        """The schema version the store is at."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection."""

    def all(self) -> list[StoredPost | DamagedRecord]:
        """Every record, oldest first."""
        out: list[StoredPost | DamagedRecord] = []
        while batch := self.since(out[-1].seq if out else 0):
            out += batch
        return out


def check_version(url: str, current: int, migrations: Sequence[Migration]) -> list[Migration]:
    """The migrations still to run on a store at schema `current`; a MishonError where the
    store is newer than this code knows."""
    newest = max((m.version for m in migrations), default=0)
    if current > newest:
        raise MishonError(
            f"record store {url} is at schema version {current}; this MISHON knows versions "
            f"up to {newest}: upgrade MISHON, or point --db at another store"
        )
    return [m for m in sorted(migrations, key=lambda m: m.version) if m.version > current]


def new_post_id() -> str:
    return uuid.uuid4().hex


def now() -> float:
    return time.time()
