"""`mishon features import`: precomputed per-post vectors (.npy plus a post id list), the form in
which public micro-video datasets ship their features, written as a feature store.

Vectors may be [M, D] (one unit per post) or [M, L, D]. Dataset posts without a vector are
stored fully masked and counted as absent; ids that the dataset does not know are an error
(or skipped and counted with `skip_unknown`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mishon.data.store import read_posts
from mishon.errors import InputError, MishonError, Problem
from mishon.features.base import Modality
from mishon.features.store import FeatureStore, StoreSpec, modality_dir, read_store_manifest

CHUNK = 4096


@dataclass
class ImportReport:
    modality: str
    units: int
    dim: int
    matched: int
    absent: int
    unknown: int


def read_id_list(path: Path) -> list[str]:
    """Post ids, one per line; blank lines and repeats are errors naming the line."""
    try:
        lines = path.read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError.single(path, f"cannot read: {exc}", reason="unreadable file") from None
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    ids: list[str] = []
    for number, line in enumerate(lines, start=1):
        post_id = line.strip()
        if not post_id:
            problems.append(Problem(str(path), number, None, "missing value", "empty line", "line"))
        elif post_id in seen:
            problems.append(
                Problem(
                    str(path),
                    number,
                    None,
                    "duplicate post_id",
                    f"{post_id!r} also on line {seen[post_id]}",
                    "line",
                )
            )
        else:
            seen[post_id] = number
        ids.append(post_id)
    if problems:
        raise InputError(problems)
    return ids


def load_vectors(path: Path) -> np.ndarray:
    """A numeric .npy array, memory-mapped; object arrays (pickles) are refused."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError.single(
            path, f"cannot read as a numeric .npy array: {exc}", reason="unreadable file"
        ) from None
    if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.number):
        raise InputError.single(
            path, f"expected a numeric array, got {getattr(array, 'dtype', type(array))}"
        )
    if array.ndim not in (2, 3):
        raise InputError.single(
            path, f"expected shape [posts, dim] or [posts, L, dim], got {array.shape}"
        )
    return array


def import_vectors(
    dataset: Path,
    modality: Modality,
    vectors_path: Path,
    ids_path: Path,
    overwrite: bool = False,
    skip_unknown: bool = False,
) -> ImportReport:
    """Write the vectors as DATASET/features/<modality>/ in the dataset's post order."""
    vectors = load_vectors(vectors_path)
    ids = read_id_list(ids_path)
    if len(ids) != len(vectors):
        raise MishonError(
            f"{ids_path} lists {len(ids)} post ids but {vectors_path} has {len(vectors)} rows"
        )
    posts = read_posts(dataset)
    post_ids = posts["post_id"].astype(str).tolist()
    position = {pid: i for i, pid in enumerate(post_ids)}
    unknown = [(n, pid) for n, pid in enumerate(ids, start=1) if pid not in position]
    if unknown and not skip_unknown:
        raise InputError(
            [
                Problem(
                    str(ids_path),
                    n,
                    None,
                    "unknown post_id",
                    f"{pid!r} is not a post of {dataset}",
                    "line",
                )
                for n, pid in unknown
            ]
        )
    units = 1 if vectors.ndim == 2 else vectors.shape[1]
    dim = vectors.shape[-1]
    spec = StoreSpec(modality.value, "imported", f"imported from {vectors_path.name}", units, dim)
    folder = modality_dir(dataset, modality.value)
    existing = read_store_manifest(folder)
    if existing is not None and existing.get("extractor") != "imported" and not overwrite:
        raise MishonError(
            f"{folder} holds {existing.get('extractor')} features; pass --overwrite to replace them"
        )
    # An import always starts afresh, so no row of an earlier import can survive.
    store = FeatureStore.create_or_resume(folder, spec, post_ids, overwrite=True)
    source_rows = np.array([i for i, pid in enumerate(ids) if pid in position], dtype=np.int64)
    target_rows = np.array([position[ids[i]] for i in source_rows], dtype=np.int64)
    order = np.argsort(target_rows)
    source_rows, target_rows = source_rows[order], target_rows[order]
    for start in range(0, len(source_rows), CHUNK):
        src = source_rows[start : start + CHUNK]
        dst = target_rows[start : start + CHUNK]
        block = np.asarray(vectors[src], dtype=np.float32).reshape(len(src), units, dim)
        bad = ~np.isfinite(block).all(axis=(1, 2))
        if bad.any():
            row = int(src[np.flatnonzero(bad)[0]])
            raise InputError.single(
                vectors_path, "holds NaN or infinite values", row=row + 1, reason="bad number"
            )
        if np.abs(block).max(initial=0.0) > np.finfo(np.float16).max:
            raise InputError.single(
                vectors_path, "values exceed the float16 range of the store; scale them first"
            )
        store.values[dst] = block.astype(np.float16)
        store.mask[dst] = True
    store.values.flush()
    store.mask.flush()
    store.status[:] = 1  # every post is done: with its vector, or absent (fully masked)
    store.status.flush()
    store.finish()
    matched = len(source_rows)
    return ImportReport(modality.value, units, dim, matched, len(post_ids) - matched, len(unknown))
