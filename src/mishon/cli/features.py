"""`mishon extract` and `mishon features`: feature stores."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mishon.cli.common import (
    SetOption,
    app,
    console,
    err_console,
    features_app,
    progress_bar,
    reports_errors,
)
from mishon.config import (
    ExtractSettings,
    load_settings,
)
from mishon.errors import MishonError


def _extractor_override(
    name: str | None, model: str | None, units: int | None
) -> dict[str, Any] | None:
    values: dict[str, Any] = {}
    if name is not None and name.lower() != "none":  # none: an assignment, see extract
        values["name"] = name
    if model is not None:
        values["model"] = model
    if units is not None:
        values["units"] = units
    return values or None


@app.command("extract")
@reports_errors
def extract(
    dataset: Annotated[
        Path, typer.Argument(help="Dataset directory; features go to DATASET/features/.")
    ],
    visual: Annotated[
        str | None, typer.Option(help="efficientnet-lite0 (default), vit or none.")
    ] = None,
    acoustic: Annotated[
        str | None,
        typer.Option(help="logmel (default), wav2vec2, sound (the sound's identity) or none."),
    ] = None,
    textual: Annotated[
        str | None,
        typer.Option(help="minilm (default), bert, charngram (any language, no weights) or none."),
    ] = None,
    visual_model: Annotated[
        str | None, typer.Option(help="Weights folder or hub id for vit.")
    ] = None,
    acoustic_model: Annotated[
        str | None, typer.Option(help="Weights folder or hub id for wav2vec2.")
    ] = None,
    textual_model: Annotated[
        str | None, typer.Option(help="Weights folder or hub id for bert.")
    ] = None,
    visual_units: Annotated[int | None, typer.Option(help="Frames per post [8].")] = None,
    acoustic_units: Annotated[int | None, typer.Option(help="Audio windows per post [8].")] = None,
    textual_units: Annotated[int | None, typer.Option(help="Caption tokens per post [32].")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Posts per batch [16].")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Decoding processes, 0 = in-process [2].")
    ] = None,
    allow_download: Annotated[
        bool | None,
        typer.Option(
            "--allow-download/--no-download", help="Let transformers download weights [no]."
        ),
    ] = None,
    device: Annotated[str | None, typer.Option(help="Torch device [cpu].")] = None,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Try failed posts again.")
    ] = False,
    engine: Annotated[
        str | None,
        typer.Option(help="local (worker processes) or ray (a Ray cluster: mishon[ray]) [local]."),
    ] = None,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address for --engine ray [a local cluster].")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="YAML file of ExtractSettings keys.")] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Recompute stores made with other settings.")
    ] = False,
    assignments: SetOption = None,
) -> None:
    """Extract visual, acoustic and textual features of every post (resumable: rerun to finish)."""
    from mishon.allocator import keep_freed_memory
    from mishon.features.extract import extract_features

    keep_freed_memory()  # the extractors' large tensors without page faults (allocator.py)

    settings = load_settings(
        ExtractSettings,
        config,
        {
            "visual": _extractor_override(visual, visual_model, visual_units),
            "acoustic": _extractor_override(acoustic, acoustic_model, acoustic_units),
            "textual": _extractor_override(textual, textual_model, textual_units),
            "batch_size": batch_size,
            "workers": workers,
            "allow_download": allow_download,
            "device": device,
            "retry_failed": retry_failed or None,
            "engine": engine,
            "ray_address": address,
        },
        [
            f"{modality}.name=null"
            for modality, name in (("visual", visual), ("acoustic", acoustic), ("textual", textual))
            if name is not None and name.lower() == "none"
        ]
        + (assignments or []),
    )
    with progress_bar() as bar:
        task = bar.add_task("extracting", total=None)
        report = extract_features(
            dataset,
            settings,
            overwrite=overwrite,
            progress=lambda n: bar.advance(task, n),
            on_total=lambda total: bar.update(task, total=total),
        )
    table = Table(
        title=f"features of {report.posts:,} posts in {dataset / 'features'} "
        f"({report.seconds:.1f} s)"
    )
    for column in ("modality", "extractor", "L x D", "computed", "reused", "absent", "failed"):
        table.add_column(column, justify="left" if column in ("modality", "extractor") else "right")
    for modality, info in report.modalities.items():
        table.add_row(
            str(modality),
            info.extractor,
            f"{info.units} x {info.dim}",
            str(info.computed),
            str(info.reused),
            str(info.counts.get("absent", 0)),
            str(info.counts.get("failed", 0)),
        )
    console.print(table)
    for note in report.notes:
        console.print(note)
    for modality, reason in report.skipped.items():
        console.print(f"{modality}: left out ({reason})")
    for modality, info in report.modalities.items():
        for post_id, error in list(info.failures.items())[:10]:
            console.print(f"[yellow]failed[/] {modality} {post_id}: {error}", highlight=False)
        if len(info.failures) > 10:
            console.print(
                f"... {len(info.failures) - 10} more {modality} failures in "
                f"features/{modality}/failures.jsonl"
            )


@features_app.command("import")
@reports_errors
def features_import(
    dataset: Annotated[Path, typer.Argument(help="Dataset directory.")],
    modality: Annotated[str, typer.Option(help="visual, acoustic or textual.")],
    vectors: Annotated[Path, typer.Option(help=".npy array [posts, D] or [posts, L, D].")],
    ids: Annotated[Path, typer.Option(help="Text file: the post id of each row, one per line.")],
    skip_unknown: Annotated[
        bool, typer.Option("--skip-unknown", help="Ignore ids the dataset lacks.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace extracted features.")
    ] = False,
) -> None:
    """Store precomputed per-post vectors (as public datasets ship them) as features."""
    from mishon.features.base import Modality
    from mishon.features.imported import import_vectors

    try:
        kind = Modality(modality)
    except ValueError:
        raise MishonError(
            f"unknown modality {modality!r}; use visual, acoustic or textual"
        ) from None
    report = import_vectors(
        dataset, kind, vectors, ids, overwrite=overwrite, skip_unknown=skip_unknown
    )
    console.print(
        f"{report.modality}: {report.matched:,} posts with a vector "
        f"(L={report.units}, D={report.dim}), "
        f"{report.absent:,} without (masked), {report.unknown:,} unknown ids skipped"
    )


@features_app.command("validate")
@reports_errors
def features_validate(dataset: Annotated[Path, typer.Argument(help="Dataset directory.")]) -> None:
    """Check every feature store of a dataset against its posts; print a summary."""
    from mishon.data.store import read_posts
    from mishon.features.store import check_store, list_stores, read_store_manifest

    modalities = list_stores(dataset)
    if not modalities:
        raise MishonError(f"no feature store in {dataset}: run `mishon extract {dataset}`")
    post_ids = read_posts(dataset)["post_id"].astype(str).tolist()
    table = Table(title=f"feature stores of {dataset}")
    for column in ("modality", "extractor", "L x D", "done", "absent", "failed"):
        table.add_column(column)
    problems: list[str] = []
    models: list[str] = []
    for modality in modalities:
        manifest = read_store_manifest(dataset / "features" / modality) or {}
        counts = manifest.get("counts", {})
        table.add_row(
            modality,
            str(manifest.get("extractor")),
            f"{manifest.get('units')} x {manifest.get('dim')}",
            str(counts.get("done")),
            str(counts.get("absent")),
            str(counts.get("failed")),
        )
        models.append(f"{modality}: {manifest.get('model_id')}")
        problems += check_store(dataset, modality, post_ids)
    console.print(table)
    for line in models:
        console.print(f"  {line}", highlight=False, soft_wrap=True)
    if problems:
        for problem in problems:
            err_console.print(f"[red]problem:[/] {problem}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print("[green]valid[/]")
