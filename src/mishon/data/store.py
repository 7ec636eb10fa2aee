"""Reading and writing a dataset directory; every write is atomic (temporary file + rename)."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mishon.data.schema import (
    MANIFEST_FILE,
    MEDIA_DIR,
    POSTS_FILE,
    POSTS_SCHEMA,
    REQUIRED_POST_COLUMNS,
    SPLIT_SCHEMA,
    SPLITS_DIR,
    TRUTH_DIR,
    USERS_FILE,
    USERS_SCHEMA,
    schema_subset,
)
from mishon.errors import InputError, MishonError
from mishon.lineage import DIGEST_CHARS, file_digest

# What a dataset directory may hold: `--overwrite` replaces a directory holding only these.
OWNED_ENTRIES = (
    POSTS_FILE,
    USERS_FILE,
    MANIFEST_FILE,
    SPLITS_DIR,
    MEDIA_DIR,
    TRUTH_DIR,
    "features",  # derived from the posts: stale once the dataset is replaced
    "import_report.json",
)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; give the usual mode
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def pending_path(path: Path) -> Path:
    """Where a file of a set is written before the set's manifest commits it (beside it)."""
    return path.parent / f".{path.name}.next"


def complete_pending(path: Path, committed: str | None, discard: bool = True) -> None:
    """A file of a set killed mid-save: its pending copy takes its name when its digest is
    the `committed` one; otherwise the copy (of an uncommitted save) goes, with `discard`."""
    pending = pending_path(path)
    with contextlib.suppress(FileNotFoundError):  # another process moved it meanwhile
        if committed is not None and file_digest(pending) == committed:
            os.replace(pending, path)
        elif discard:
            pending.unlink()


def write_json(obj: Any, path: Path) -> None:
    """Write `obj` as indented UTF-8 JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n", "utf-8")


def write_table(df: pd.DataFrame, path: Path, schema: pa.Schema) -> None:
    """Write the columns of `df` that `schema` knows, with the schema's types, atomically."""
    unknown = [c for c in df.columns if c not in schema.names]
    if unknown:
        raise MishonError(f"cannot write {path.name}: unknown column(s) {unknown}")
    sub = schema_subset(schema, list(df.columns))
    frame = df[sub.names].copy()
    for field in sub:
        if pa.types.is_timestamp(field.type) and len(frame):
            # the format stores microseconds; finer digits would make Arrow refuse the cast
            frame[field.name] = pd.to_datetime(frame[field.name], utc=True).dt.floor("us")
    table = pa.Table.from_pandas(frame, schema=sub, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def _replaceable(out: Path, overwrite: bool) -> None:
    """Refuse an `out` that is not a directory, or holds anything unless `overwrite`, or holds
    files that are not a dataset's (those are never removed)."""
    if out.exists() and not out.is_dir():
        raise MishonError(f"output path {out} exists and is not a directory")
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if entries and not overwrite:
        raise MishonError(
            f"output directory {out} is not empty; pass --overwrite to replace its dataset"
        )
    foreign = [name for name in entries if name not in OWNED_ENTRIES]
    if foreign:
        raise MishonError(
            f"output directory {out} holds files that are not a dataset's ({', '.join(foreign)}); "
            "--overwrite replaces only a dataset: move them or choose another output directory"
        )


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories in one step (Linux renameat2 RENAME_EXCHANGE); False where the
    system or file system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _old_path(out: Path) -> Path:
    return out.parent / f".{out.name}.old"


def recover_swap(out: Path) -> None:
    """Finish what a killed swap left: the old dataset back in place, or its leftover removed."""
    old = _old_path(out)
    if old.is_dir():
        if out.exists():
            shutil.rmtree(old)
        else:
            os.rename(old, out)


def swap_in(stage: Path, out: Path) -> None:
    """Put the finished folder `stage` in place of `out` (or where none is); the old one is
    removed. A kill at any moment leaves `out` the old or the new one (see recover_swap)."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        os.rename(stage, out)
        return
    if _exchange(stage, out):
        shutil.rmtree(stage)  # now the replaced dataset
        return
    old = _old_path(out)
    os.rename(out, old)  # a kill from here on: recover_swap puts the old one back
    os.rename(stage, out)
    shutil.rmtree(old)


def staging_path(out: Path) -> Path:
    """Where a dataset for `out` is built before it replaces `out` (beside it)."""
    return out.parent / f".{out.name}.partial"


@contextmanager
def building_dir(out: Path, overwrite: bool, keep_partial: bool = False) -> Iterator[Path]:
    """Yield a folder beside `out` to build a dataset in; it replaces `out` (whose files must
    all be a dataset's; any at all only with `overwrite`) when the block succeeds. A failure or
    a kill at any moment leaves the old dataset whole; `keep_partial` keeps an unfinished build
    for the next run to continue, otherwise it is removed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    recover_swap(out)
    _replaceable(out, overwrite)
    stage = staging_path(out)
    if stage.exists() and not keep_partial:
        shutil.rmtree(stage)
    stage.mkdir(exist_ok=True)
    try:
        yield stage
    except BaseException:
        if not keep_partial:
            shutil.rmtree(stage, ignore_errors=True)
        raise
    swap_in(stage, out)


def read_posts(root: Path) -> pd.DataFrame:
    """Load posts.parquet with `hashtags` as Python lists; raise InputError if unreadable."""
    path = root / POSTS_FILE
    if not path.is_file():
        raise InputError.single(path, "no posts table here: is this a mishon dataset directory?")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise InputError.single(path, f"cannot read parquet: {exc}") from None
    missing = [c for c in REQUIRED_POST_COLUMNS if c not in table.column_names]
    if missing:
        raise InputError.single(
            path, f"missing required column(s) {missing}", field=missing[0], reason="missing column"
        )
    df = table.to_pandas()
    df["hashtags"] = [[] if tags is None else list(tags) for tags in df["hashtags"]]
    return df


def read_users(root: Path) -> pd.DataFrame | None:
    """Load users.parquet, or None where the dataset has none."""
    path = root / USERS_FILE
    if not path.is_file():
        return None
    try:
        return pq.read_table(path).to_pandas()
    except (OSError, pa.ArrowException) as exc:
        raise InputError.single(path, f"cannot read parquet: {exc}") from None


def write_dataset(
    root: Path,
    posts: pd.DataFrame,
    users: pd.DataFrame | None,
    manifest: dict[str, Any],
) -> None:
    """Write posts, optional users and the manifest into `root` (which must exist)."""
    write_table(posts, root / POSTS_FILE, POSTS_SCHEMA)
    if users is not None:
        write_table(users, root / USERS_FILE, USERS_SCHEMA)
    write_json(manifest, root / MANIFEST_FILE)


def read_manifest(root: Path) -> dict[str, Any]:
    """The dataset manifest (provenance and counts), or {} where absent."""
    path = root / MANIFEST_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError.single(path, f"cannot read manifest: {exc}") from None


def split_path(root: Path, name: str) -> Path:
    """Where the split called `name` lives; the name must be a plain identifier."""
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise MishonError(f"split name {name!r} must use only letters, digits, '-' and '_'")
    return root / SPLITS_DIR / f"{name}.parquet"


def write_split(root: Path, name: str, assignment: pd.DataFrame, meta: dict[str, Any]) -> Path:
    """Write a split (post_id, split) and its metadata (splits/NAME.json)."""
    path = split_path(root, name)
    write_table(assignment[["post_id", "split"]], path, SPLIT_SCHEMA)
    write_json({**meta, "fingerprint": split_fingerprint(assignment)}, path.with_suffix(".json"))
    return path


def read_split(root: Path, name: str) -> pd.DataFrame:
    """Load the split called `name` as a DataFrame (post_id, split)."""
    path = split_path(root, name)
    if not path.is_file():
        available = list_splits(root)
        raise MishonError(
            f"no split {name!r} in {root}; available: {available or 'none'} "
            f"(create one with `mishon data split {root}`)"
        )
    try:
        return pq.read_table(path).to_pandas()
    except (OSError, pa.ArrowException) as exc:
        raise MishonError(
            f"cannot read {path} ({exc}): make the split again with "
            f"`mishon data split {root} --name {name} --overwrite`"
        ) from None


def split_fingerprint(assignment: pd.DataFrame) -> str:
    """The content fingerprint of a split: its (post_id, split) pairs, in order."""
    hasher = hashlib.sha256()
    for column in ("post_id", "split"):
        hasher.update("\x1f".join(assignment[column].astype(str)).encode("utf-8"))
        hasher.update(b"\x1e")
    return hasher.hexdigest()[:DIGEST_CHARS]


def list_splits(root: Path) -> list[str]:
    """Names of the splits stored in the dataset."""
    folder = root / SPLITS_DIR
    return sorted(p.stem for p in folder.glob("*.parquet")) if folder.is_dir() else []
