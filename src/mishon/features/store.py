"""The feature store: per modality, float16 [N, L, D] values and a bool [N, L] mask, memory-mapped
`.npy` files in post order, a per-post status, and a manifest.

Layout of `DATASET/features/<modality>/`:
- `values.npy` float16 [N, L, D], `mask.npy` bool [N, L] (True = a real unit);
- `status.npy` int8 [N]: 0 pending, 1 done, 2 failed;
- `failures.jsonl`: one {"post_id", "error"} line per failed post (the last line of a post wins);
- `manifest.json`: modality, extractor, model id, L, D, dtype, package versions, post ids,
  and, once finished, counts of done / absent (no input, fully masked) / failed posts,
  `content`, a digest of the three arrays (the store's fingerprint in later stages' lineage),
  and `sample`, a digest of 16 evenly spaced rows: every open recomputes it (arrays changed
  after extraction are refused at once), `mishon features validate` the whole digest.

Writes go to the values and mask first, are flushed, and only then is the status set: a crash
at any point leaves rows either done and correct, or pending.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mishon.data.store import recover_swap, staging_path, swap_in, write_json
from mishon.errors import MishonError
from mishon.lineage import digest, file_digest

FEATURES_DIR = "features"
PENDING, DONE, FAILED = 0, 1, 2
MANIFEST = "manifest.json"
ARRAYS = ("values.npy", "mask.npy", "status.npy")
SAMPLED_ROWS = 16  # rows whose digest every open checks


@dataclass(frozen=True)
class StoreSpec:
    """What identifies a store's content: resuming requires the same spec and post ids."""

    modality: str
    extractor: str
    model_id: str
    units: int
    dim: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "modality": self.modality,
            "extractor": self.extractor,
            "model_id": self.model_id,
            "units": self.units,
            "dim": self.dim,
        }


def package_versions() -> dict[str, str]:
    versions = {}
    for package in ("mishon", "numpy", "torch", "transformers", "av"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def modality_dir(dataset: Path, modality: str) -> Path:
    return dataset / FEATURES_DIR / modality


class FeatureStore:
    """An open feature store of one modality (read-only unless opened for writing)."""

    def __init__(self, folder: Path, manifest: dict[str, Any], writable: bool) -> None:
        self.folder = folder
        self.manifest = manifest
        mode: Literal["r+", "r"] = "r+" if writable else "r"
        arrays = []
        for name in ARRAYS:
            try:
                arrays.append(np.load(folder / name, mmap_mode=mode, allow_pickle=False))
            except (OSError, ValueError) as exc:
                raise MishonError(
                    f"cannot read {folder / name} ({exc}): extract again with "
                    "`mishon extract DATASET --overwrite`"
                ) from None
        self.values, self.mask, self.status = arrays
        self.post_ids: list[str] = manifest["post_ids"]
        n, units, dim = len(self.post_ids), manifest.get("units"), manifest.get("dim")
        for name, array, shape in zip(
            ARRAYS, arrays, ((n, units, dim), (n, units), (n,)), strict=True
        ):
            if array.shape != shape:
                raise MishonError(
                    f"{folder / name} has shape {array.shape}, its manifest says {shape}: "
                    "extract again with `mishon extract DATASET --overwrite`"
                )
        self.replaces: Path | None = None  # the store this one replaces once complete

    @property
    def spec(self) -> StoreSpec:
        m = self.manifest
        return StoreSpec(m["modality"], m["extractor"], m["model_id"], m["units"], m["dim"])

    @classmethod
    def create_or_resume(
        cls, folder: Path, spec: StoreSpec, post_ids: list[str], overwrite: bool = False
    ) -> FeatureStore:
        """Open the store in `folder` to continue it, or create it; refuse a different one.

        With `overwrite`, a store already there stays whole until the new one is complete: the
        new one is built (and continued after an interruption) beside it and swapped in by
        `finish`."""
        recover_swap(folder)
        manifest_path = folder / MANIFEST
        if not manifest_path.is_file():
            return cls._create(folder, spec, post_ids)
        if not overwrite:
            manifest = _read_manifest(manifest_path)
            if cls._same(manifest, spec, post_ids):
                return cls(folder, manifest, writable=True)
            raise MishonError(
                f"{folder} holds {manifest.get('extractor')} features (L={manifest.get('units')}) "
                f"for other settings or other posts; pass --overwrite to recompute them"
            )
        stage = staging_path(folder)
        staged = read_store_manifest(stage) if stage.is_dir() else None
        if staged is not None and cls._same(staged, spec, post_ids):
            store = cls(stage, staged, writable=True)
        else:
            if stage.exists():
                shutil.rmtree(stage)
            store = cls._create(stage, spec, post_ids)
        store.replaces = folder
        return store

    @staticmethod
    def _same(manifest: dict[str, Any], spec: StoreSpec, post_ids: list[str]) -> bool:
        same = {k: manifest.get(k) for k in spec.as_dict()} == spec.as_dict()
        return same and manifest.get("post_ids") == post_ids

    @classmethod
    def _create(cls, folder: Path, spec: StoreSpec, post_ids: list[str]) -> FeatureStore:
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("values.npy", "mask.npy", "status.npy", "failures.jsonl", MANIFEST):
            (folder / name).unlink(missing_ok=True)
        n = len(post_ids)
        for name, dtype, shape in (
            ("values.npy", np.float16, (n, spec.units, spec.dim)),
            ("mask.npy", np.bool_, (n, spec.units)),
            ("status.npy", np.int8, (n,)),
        ):
            array = np.lib.format.open_memmap(
                folder / f".{name}", mode="w+", dtype=dtype, shape=shape
            )
            array.flush()
            del array
            os.replace(folder / f".{name}", folder / name)
        manifest = {
            **spec.as_dict(),
            "dtype": "float16",
            "versions": package_versions(),
            "n_posts": n,
            "complete": False,
            "post_ids": post_ids,
        }
        write_json(manifest, folder / MANIFEST)
        return cls(folder, manifest, writable=True)

    @classmethod
    def open(cls, folder: Path) -> FeatureStore:
        """Open a finished store read-only; raise MishonError if missing or unfinished."""
        manifest_path = folder / MANIFEST
        if not manifest_path.is_file():
            raise MishonError(f"no features in {folder}: run `mishon extract` first")
        store = cls(folder, _read_manifest(manifest_path), writable=False)
        pending = int((store.status == PENDING).sum())
        if pending:
            raise MishonError(
                f"features in {folder} are unfinished ({pending} posts pending): "
                "rerun `mishon extract`"
            )
        recorded = store.manifest.get("sample")
        if recorded is not None and recorded != store.sample_digest():
            raise MishonError(
                f"features in {folder} were changed after extraction (sampled rows differ from "
                "the manifest's digest): run `mishon extract --overwrite` for this modality"
            )
        return store

    def sample_digest(self) -> dict[str, Any]:
        """A digest of up to SAMPLED_ROWS evenly spaced rows (values, mask, status): cheap
        enough for every open."""
        n = len(self.status)
        rows = np.unique(np.linspace(0, n - 1, min(n, SAMPLED_ROWS)).astype(np.int64))
        hashed = hashlib.sha256()
        for row in rows.tolist():
            for array in (self.values, self.mask, self.status):
                hashed.update(np.ascontiguousarray(array[row]).tobytes())
        return {"rows": rows.tolist(), "digest": hashed.hexdigest()[:16]}

    def write(
        self, start: int, values: np.ndarray, mask: np.ndarray, failed: dict[int, str]
    ) -> None:
        """Store rows start.. of a batch; `failed` maps a row offset to its error message."""
        stop = start + len(values)
        values = np.where(mask[..., None], values, 0.0)
        self.values[start:stop] = values.astype(np.float16)
        self.mask[start:stop] = mask
        self.values.flush()
        self.mask.flush()
        if failed:
            with (self.folder / "failures.jsonl").open("a", encoding="utf-8") as log:
                for offset, error in sorted(failed.items()):
                    log.write(
                        json.dumps({"post_id": self.post_ids[start + offset], "error": error})
                        + "\n"
                    )
                log.flush()
                os.fsync(log.fileno())
        status = np.full(stop - start, DONE, dtype=np.int8)
        for offset in failed:
            status[offset] = FAILED
        self.status[start:stop] = status
        self.status.flush()

    def failures(self) -> dict[str, str]:
        """Failed posts and why, for the posts whose status is failed now."""
        path = self.folder / "failures.jsonl"
        if not path.is_file():
            return {}
        last: dict[str, str] = {}
        for line in path.read_text("utf-8").splitlines():
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a crash; its post is still pending or redone
                last[record["post_id"]] = record["error"]
        index = {pid: i for i, pid in enumerate(self.post_ids)}
        return {pid: err for pid, err in last.items() if self.status[index[pid]] == FAILED}

    def counts(self) -> dict[str, int]:
        status = np.asarray(self.status)
        present = np.asarray(self.mask).any(axis=1)
        return {
            "done": int((status == DONE).sum()),
            "absent": int(((status == DONE) & ~present).sum()),
            "failed": int((status == FAILED).sum()),
            "pending": int((status == PENDING).sum()),
        }

    def finish(self) -> None:
        """Record the counts and mark the store complete when nothing is pending."""
        counts = self.counts()
        for array in (self.values, self.mask, self.status):
            array.flush()
        content = file_digest(*(self.folder / name for name in ARRAYS))
        self.manifest.update(
            counts=counts,
            complete=counts["pending"] == 0,
            content=content,
            sample=self.sample_digest(),
        )
        write_json(self.manifest, self.folder / MANIFEST)
        if self.replaces is not None and self.manifest["complete"]:
            swap_in(self.folder, self.replaces)
            self.folder, self.replaces = self.replaces, None


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise MishonError(f"cannot read {path}: {exc}") from None


@dataclass(frozen=True)
class FeatureSet:
    """A dataset's feature stores as later stages see them: one manifest per modality."""

    dataset: Path
    manifests: dict[str, dict[str, Any]]

    @classmethod
    def open(cls, dataset: Path) -> FeatureSet:
        return cls(
            dataset,
            {
                modality: _read_manifest(modality_dir(dataset, modality) / MANIFEST)
                for modality in list_stores(dataset)
            },
        )

    @property
    def modalities(self) -> list[str]:
        return list(self.manifests)

    @property
    def fingerprint(self) -> str:
        """The stores' content digests (a store finished before digests were recorded is
        identified by its whole manifest)."""
        return digest(
            {m: manifest.get("content") or manifest for m, manifest in self.manifests.items()}
        )


def features_fingerprint(dataset: Path) -> str:
    """The fingerprint of every feature store of `dataset` (`FeatureSet.fingerprint`)."""
    return FeatureSet.open(dataset).fingerprint


def list_stores(dataset: Path) -> list[str]:
    """Modalities that have a feature store in the dataset."""
    root = dataset / FEATURES_DIR
    return (
        sorted(
            p.name
            for p in root.iterdir()
            if not p.name.startswith(".") and (p / MANIFEST).is_file()  # not one being built
        )
        if root.is_dir()
        else []
    )


def read_store_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of the store in `folder`, or None where there is none."""
    path = folder / MANIFEST
    return _read_manifest(path) if path.is_file() else None


def check_store(dataset: Path, modality: str, post_ids: list[str]) -> list[str]:
    """Problems of one modality's store: wrong posts or order, shapes, unfinished rows,
    non-finite values, masked units that are not zero. Empty when it is sound."""
    folder = modality_dir(dataset, modality)
    try:
        store = FeatureStore(folder, _read_manifest(folder / MANIFEST), writable=False)
    except (OSError, ValueError, KeyError, MishonError) as exc:
        return [f"{folder}: cannot open the store: {exc}"]
    problems = []
    n, units, dim = len(store.post_ids), store.manifest["units"], store.manifest["dim"]
    if store.post_ids != post_ids:
        problems.append(
            f"{folder}: post ids differ from posts.parquet (rerun extraction with --overwrite)"
        )
    for name, array, shape in (
        ("values.npy", store.values, (n, units, dim)),
        ("mask.npy", store.mask, (n, units)),
        ("status.npy", store.status, (n,)),
    ):
        if array.shape != shape:
            problems.append(f"{folder / name}: shape {array.shape}, expected {shape}")
    if problems:
        return problems
    counts = store.counts()
    if counts["pending"]:
        problems.append(f"{folder}: {counts['pending']} posts pending: rerun `mishon extract`")
    recorded = store.manifest.get("content")
    if recorded is not None and file_digest(*(folder / name for name in ARRAYS)) != recorded:
        problems.append(
            f"{folder}: the arrays' digest differs from the manifest's: they were changed "
            "after extraction (rerun `mishon extract --overwrite`)"
        )
    for start in range(0, n, 4096):
        values = np.asarray(store.values[start : start + 4096], dtype=np.float32)
        mask = np.asarray(store.mask[start : start + 4096])
        if not np.isfinite(values).all():
            row = start + int(np.flatnonzero(~np.isfinite(values).all(axis=(1, 2)))[0])
            problems.append(
                f"{folder / 'values.npy'}: row {row + 1} "
                f"(post_id {store.post_ids[row]!r}) is not finite"
            )
            break
        if (values[~mask] != 0).any():
            problems.append(f"{folder / 'values.npy'}: masked units hold non-zero values")
            break
    return problems
