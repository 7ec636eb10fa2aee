"""Pooled modality vectors for similarity search: one unit vector per post and modality.

Each post's units are averaged over the mask, the mean over all posts that have the modality is
subtracted (our choice: CNN features are all positive, and without centring every pair of posts
looks alike to the cosine), and the result is L2-normalised. Posts without the modality get a
zero vector and a False in `present`. The store is read in row chunks with plain file reads,
not a memory map, so the resident memory stays at one chunk plus the [N, D] result.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mishon.features.store import FeatureStore

CHUNK_ROWS = 2048


def iter_npy_rows(
    path: Path, rows: np.ndarray, chunk: int = CHUNK_ROWS
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (row indices, array rows) of an .npy file for the sorted `rows`, chunk by chunk."""
    with path.open("rb") as handle:
        version = np.lib.format.read_magic(handle)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read_header(handle)
        if fortran:
            raise ValueError(f"{path}: Fortran-ordered arrays are not supported")
        offset = handle.tell()
        row_shape = shape[1:]
        row_items = int(np.prod(row_shape)) if row_shape else 1
        row_bytes = row_items * dtype.itemsize
        for start in range(0, len(rows), chunk):
            block = rows[start : start + chunk]
            first, last = int(block[0]), int(block[-1])
            handle.seek(offset + first * row_bytes)
            data = np.fromfile(handle, dtype=dtype, count=(last - first + 1) * row_items)
            data = data.reshape((last - first + 1, *row_shape))
            yield block, data[block - first]


def pooled_vectors(store: FeatureStore, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(float32 [len(rows), D] centred unit vectors, bool [len(rows)] present) for store rows."""
    vectors, present, _ = pooled_vectors_and_centre(store, rows)
    return vectors, present


def pooled_vectors_and_centre(
    store: FeatureStore, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`pooled_vectors` plus the centre subtracted (float32 [D]), to place new posts alike."""
    rows = np.asarray(rows, dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    dim = store.manifest["dim"]
    means = np.zeros((len(rows), dim), dtype=np.float32)
    present = np.zeros(len(rows), dtype=bool)
    position = 0
    masks = iter_npy_rows(store.folder / "mask.npy", sorted_rows)
    for (_, values), (_, mask) in zip(
        iter_npy_rows(store.folder / "values.npy", sorted_rows), masks, strict=True
    ):
        count = mask.sum(axis=1)
        summed = np.einsum("nld,nl->nd", values.astype(np.float32), mask.astype(np.float32))
        target = order[position : position + len(values)]
        means[target] = summed / np.maximum(count, 1)[:, None]
        present[target] = count > 0
        position += len(values)
    # In place throughout: at paper scale an extra [N, D] temporary is a gigabyte.
    centre = np.zeros(dim, dtype=np.float32)
    if present.any():
        centre = means.sum(axis=0) / present.sum()  # absent rows are zero, so this is their mean
        np.subtract(means, centre, out=means, where=present[:, None])
    norms = np.sqrt(np.einsum("nd,nd->n", means, means))
    present &= norms > 1e-12
    np.divide(means, norms[:, None], out=means, where=present[:, None])
    means[~present] = 0.0
    return means, present, centre.astype(np.float32)


def pool_units(units: np.ndarray, mask: np.ndarray, centre: np.ndarray) -> np.ndarray | None:
    """One new post's units [L, D] -> its centred unit vector, as `pooled_vectors` would give."""
    if not mask.any():
        return None
    vector = units[mask].astype(np.float32).mean(axis=0) - centre
    norm = float(np.sqrt(vector @ vector))
    return vector / norm if norm > 1e-12 else None
