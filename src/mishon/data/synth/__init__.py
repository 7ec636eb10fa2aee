"""Synthetic micro-video corpus with real media files and a known structure (docs/synthetic.md)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, wait
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from mishon import __version__
from mishon.config import SynthSettings
from mishon.data.schema import MEDIA_DIR, TRUTH_DIR
from mishon.data.store import (
    building_dir,
    read_manifest,
    staging_path,
    write_dataset,
    write_json,
    write_table,
)
from mishon.data.synth.render import render_post
from mishon.data.synth.world import RenderSpec, World, build_world
from mishon.errors import MishonError
from mishon.processes import worker_pool

__all__ = ["World", "build_world", "generate_corpus"]

ProgressFn = Callable[[int], None]
_TRUTH_SCHEMA = pa.schema(
    [
        ("post_id", pa.string()),
        ("topic", pa.int64()),
        ("visual_topic", pa.int64()),
        ("acoustic_topic", pa.int64()),
        ("textual_topic", pa.int64()),
        ("has_sound", pa.bool_()),
    ]
)


def _identity(cfg: SynthSettings) -> dict[str, Any]:
    """The settings that determine the corpus (the worker count does not)."""
    return cfg.model_dump(mode="json", exclude={"workers"})


def _target(out: Path, cfg: SynthSettings, overwrite: bool) -> tuple[Path, bool]:
    """Where to render: `out` itself when it holds this corpus (an interrupted run: keep its
    clips), else a staging folder beside it that replaces `out` when complete (True)."""
    manifest = read_manifest(out) if out.is_dir() else {}
    if not overwrite and manifest.get("synth") == _identity(cfg):
        return out, False
    if manifest.get("synth") is not None and not overwrite:
        raise MishonError(
            f"{out} holds a synthetic corpus made with other settings; "
            "pass --overwrite to replace it"
        )
    stage = staging_path(out)
    staged = read_manifest(stage) if stage.is_dir() else {}
    if staged.get("synth") != _identity(cfg) and stage.exists():
        shutil.rmtree(stage)  # an unfinished corpus of other settings
    return stage, True


def _manifest(name: str, cfg: SynthSettings, complete: bool) -> dict[str, Any]:
    return {
        "format_version": 1,
        "name": name,
        "created_by": f"mishon {__version__} data synth",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "synth": _identity(cfg),
        "complete": complete,
    }


def _render_all(
    specs: list[RenderSpec], cfg: SynthSettings, media: Path, progress: ProgressFn | None
) -> None:
    def done(count: int = 1) -> None:
        if progress is not None:
            progress(count)

    if cfg.workers == 1 or len(specs) < 8:
        for spec in specs:
            render_post(spec, cfg, media / f"{spec.post_id}.mp4")
            done()
        return
    with worker_pool(cfg.workers) as pool:
        pending = {pool.submit(render_post, s, cfg, media / f"{s.post_id}.mp4") for s in specs}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                future.result()  # re-raise a worker's error here
            done(len(finished))


def generate_corpus(
    out: Path,
    cfg: SynthSettings,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    on_total: Callable[[int], None] | None = None,
) -> World:
    """Write a synthetic dataset to `out`: clips in media/, tables, and ground truth in truth/.

    Rerunning with the same settings after an interruption renders only the missing clips
    (each clip is written under a temporary name and renamed when complete).
    """
    target, staged = _target(out, cfg, overwrite)
    if not staged:
        return _render_corpus(target, out.name, cfg, progress, on_total)
    with building_dir(out, overwrite, keep_partial=True) as stage:
        return _render_corpus(stage, out.name, cfg, progress, on_total)


def _render_corpus(
    folder: Path,
    name: str,
    cfg: SynthSettings,
    progress: ProgressFn | None,
    on_total: Callable[[int], None] | None,
) -> World:
    if not (folder / "dataset.json").is_file():
        write_json(_manifest(name, cfg, complete=False), folder / "dataset.json")
    world = build_world(cfg)
    media = folder / MEDIA_DIR
    media.mkdir(exist_ok=True)
    todo = [s for s in world.renders if not (media / f"{s.post_id}.mp4").is_file()]
    if on_total is not None:
        on_total(len(todo))
    _render_all(todo, cfg, media, progress)
    truth_dir = folder / TRUTH_DIR
    truth_dir.mkdir(exist_ok=True)
    write_table(world.truth_posts, truth_dir / "posts.parquet", _TRUTH_SCHEMA)
    write_json(world.truth, truth_dir / "structure.json")
    write_dataset(folder, world.posts, world.users, _manifest(name, cfg, complete=True))
    return world
