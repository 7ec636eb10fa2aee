"""The `mishon` command line: one command per pipeline stage (Typer)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from mishon import __version__
from mishon.config import (
    ExtractSettings,
    GraphSettings,
    ImportSettings,
    SplitSettings,
    SynthSettings,
    load_settings,
)
from mishon.errors import InputError, MishonError

app = typer.Typer(
    name="mishon",
    help="MISHON: hybrid graph-based hashtag recommendation for micro-videos.",
    no_args_is_help=True,
    add_completion=False,
)
data_app = typer.Typer(
    help="Datasets: import, synthesise, validate, describe, split.", no_args_is_help=True
)
app.add_typer(data_app, name="data")
features_app = typer.Typer(
    help="Feature stores: import precomputed vectors, check, describe.", no_args_is_help=True
)
app.add_typer(features_app, name="features")

# Piped output (logs, CI) would get 80 columns and truncated tables: give it room instead.
console = Console(width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def reports_errors(func: F) -> F:
    """Turn MishonError into a red message and exit status 1 instead of a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except InputError as exc:
            count = len(exc.problems)
            err_console.print(
                f"[bold red]error:[/] {count} problem(s) in the input:", highlight=False
            )
            err_console.print(str(exc), highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except MishonError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        console.print(f"mishon {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """MISHON command line."""


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )


# --------------------------------------------------------------------------- data


@data_app.command("import")
@reports_errors
def data_import(
    src: Annotated[
        Path, typer.Argument(help="Source file (csv/tsv/jsonl) or folder (howyoutagtweets).")
    ],
    out: Annotated[Path, typer.Argument(help="Dataset directory to create.")],
    format: Annotated[
        str, typer.Option("--format", "-f", help="csv, tsv, jsonl or howyoutagtweets.")
    ],
    map: Annotated[
        str,
        typer.Option(
            "--map",
            help="FIELD=COLUMN pairs, comma separated, e.g. post_id=id,user_id=author,caption=text,"
            "hashtags=tags,created_at=time (fields: post_id user_id caption hashtags video "
            "created_at likes comments shares views followers split).",
        ),
    ] = "",
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Import the good rows, list the bad ones.")
    ] = False,
    hashtag_sep: Annotated[
        str | None,
        typer.Option(
            "--hashtag-sep", help="Separator in hashtag strings (default: , ; | or spaces)."
        ),
    ] = None,
    media: Annotated[
        str, typer.Option("--media", help="copy, hardlink or symlink video files.")
    ] = "copy",
    encoding: Annotated[
        str, typer.Option("--encoding", help="Text encoding of the source.")
    ] = "utf-8-sig",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a dataset already in OUT.")
    ] = False,
) -> None:
    """Import a table of posts (or the #HowYouTagTweets folder) into a dataset directory."""
    from mishon.data.importers import import_dataset, parse_mapping

    settings = load_settings(
        ImportSettings,
        overrides={
            "format": format,
            "mapping": parse_mapping(map),
            "skip_bad": skip_bad,
            "hashtag_separator": hashtag_sep,
            "media": media,
            "encoding": encoding,
        },
    )
    with err_console.status(f"importing {src}"):
        result = import_dataset(src, out, settings, overwrite=overwrite)
    console.print(
        f"imported [bold]{len(result.posts)}[/] posts of {result.records_read} records into {out}"
    )
    if result.problems:
        table = Table(
            title=f"skipped {len(result.problems)} record(s); details in "
            f"{out / 'import_report.json'}"
        )
        table.add_column("reason")
        table.add_column("records", justify="right")
        for reason, count in result.skipped_by_reason().items():
            table.add_row(reason, str(count))
        console.print(table)


@data_app.command("validate")
@reports_errors
def data_validate(
    dataset: Annotated[Path, typer.Argument(help="Dataset directory.")],
    probe_media: Annotated[
        bool, typer.Option("--probe-media", help="Also decode the first frame of every video.")
    ] = False,
) -> None:
    """Check a dataset directory against the format; exit 1 listing every problem."""
    from mishon.data.validate import validate_dataset

    probe = None
    if probe_media:
        from mishon.media.probe import probe_video

        probe = probe_video
    problems = validate_dataset(dataset, probe)
    if problems:
        raise InputError(problems, limit=50)
    console.print(f"[green]valid[/]: {dataset}")


@data_app.command("stats")
@reports_errors
def data_stats(
    dataset: Annotated[Path, typer.Argument(help="Dataset directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Describe a dataset: posts, users, hashtags, coverage, engagement fields, splits."""
    from mishon.data.stats import dataset_stats

    stats = dataset_stats(dataset)
    if as_json:
        print(json.dumps(stats, indent=2, ensure_ascii=False))
        return
    table = Table(title=f"dataset {dataset}", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    hpp, ppu = stats["hashtags_per_labelled_post"], stats["posts_per_user"]
    rows = [
        ("posts", f"{stats['posts']:,}"),
        ("  without hashtags (unlabeled)", f"{stats['posts_without_hashtags']:,}"),
        ("users", f"{stats['users']:,}"),
        ("distinct hashtags", f"{stats['hashtags']:,}"),
        ("  used once", f"{stats['hashtags_used_once']:,}"),
        ("hashtag occurrences", f"{stats['hashtag_occurrences']:,}"),
        (
            "hashtags per labelled post",
            f"mean {hpp['mean']:.2f}, median {hpp['median']:g}, max {hpp['max']:g}",
        ),
        (
            "posts per user",
            f"mean {ppu['mean']:.2f}, median {ppu['median']:g}, "
            f"min {ppu['min']:g}, max {ppu['max']:g}",
        ),
        ("posts with video", f"{stats['media']['with_video']:,}"),
        ("posts with caption", f"{stats['media']['with_caption']:,}"),
        ("engagement fields", ", ".join(stats["engagement_fields"]) or "none"),
        ("follower counts", "yes" if stats["followers"] else "no"),
    ]
    if stats["time_range"]:
        tr = stats["time_range"]
        rows.append(
            ("time range", f"{tr['first'][:10]} .. {tr['last'][:10]} ({tr['missing']} missing)")
        )
    if stats["given_split"]:
        rows.append(
            ("given split", ", ".join(f"{k} {v:,}" for k, v in stats["given_split"].items()))
        )
    for name, counts in stats["splits"].items():
        rows.append(
            (
                f"split {name}",
                ", ".join(f"{k} {v['labelled']:,}/{v['posts']:,}" for k, v in counts.items()),
            )
        )
    for what, value in rows:
        table.add_row(what, value)
    console.print(table)
    top = ", ".join(f"{tag} ({count})" for tag, count in stats["top_hashtags"])
    console.print(f"top hashtags: {top}", highlight=False)
    if stats["splits"]:
        console.print("split figures are labelled/all posts", style="dim")


@data_app.command("synth")
@reports_errors
def data_synth(
    out: Annotated[Path, typer.Argument(help="Dataset directory to create.")],
    users: Annotated[int | None, typer.Option("--users", help="Number of users [60].")] = None,
    posts: Annotated[int | None, typer.Option("--posts", help="Number of posts [600].")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed [0].")] = None,
    topics: Annotated[int | None, typer.Option("--topics", help="Latent topics [8].")] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Encoding processes [2].")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="YAML file of SynthSettings keys (docs/synthetic.md)."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a dataset already in OUT.")
    ] = False,
) -> None:
    """Generate a synthetic micro-video corpus with real H.264/AAC clips and a known structure.

    Rerun with the same settings to finish an interrupted run: only missing clips are rendered.
    """
    from mishon.data.synth import generate_corpus

    settings = load_settings(
        SynthSettings,
        config,
        {"users": users, "posts": posts, "seed": seed, "topics": topics, "workers": workers},
    )
    with progress_bar() as bar:
        task = bar.add_task("rendering clips", total=None)
        world = generate_corpus(
            out,
            settings,
            overwrite=overwrite,
            progress=lambda n: bar.advance(task, n),
            on_total=lambda total: bar.update(task, total=total),
        )
    console.print(
        f"wrote {len(world.posts)} posts by {settings.users} users with clips of "
        f"{settings.duration_s:g} s to {out}"
    )


@data_app.command("split")
@reports_errors
def data_split(
    dataset: Annotated[Path, typer.Argument(help="Dataset directory.")],
    strategy: Annotated[
        str | None,
        typer.Option(
            "--strategy", help="temporal, random, given or cold-start [given > temporal > random]."
        ),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Split name [the strategy].")] = None,
    valid_fraction: Annotated[
        float | None, typer.Option("--valid-fraction", help="Validation share [0.1].")
    ] = None,
    test_fraction: Annotated[
        float | None, typer.Option("--test-fraction", help="Test share [0.1].")
    ] = None,
    cold_user_fraction: Annotated[
        float | None,
        typer.Option("--cold-user-fraction", help="cold-start: share of users held out [0.1]."),
    ] = None,
    cold_base: Annotated[
        str | None, typer.Option("--cold-base", help="cold-start: split for warm users [auto].")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed [0].")] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a split of the same name.")
    ] = False,
) -> None:
    """Assign posts to train / valid / test and store the split under DATASET/splits/."""
    from mishon.data.splits import make_split
    from mishon.data.store import read_posts, split_path, write_split

    settings = load_settings(
        SplitSettings,
        overrides={
            "strategy": strategy,
            "valid_fraction": valid_fraction,
            "test_fraction": test_fraction,
            "cold_user_fraction": cold_user_fraction,
            "cold_base": cold_base,
            "seed": seed,
        },
    )
    posts = read_posts(dataset)
    assignment, meta = make_split(posts, settings)
    split_name = name or meta["strategy"]
    target = split_path(dataset, split_name)
    if target.exists() and not overwrite:
        raise MishonError(
            f"split {split_name!r} exists in {dataset}; pass --overwrite or another --name"
        )
    write_split(dataset, split_name, assignment, meta)
    table = Table(title=f"split {split_name!r} ({meta['strategy']})")
    for column in ("part", "posts", "labelled posts"):
        table.add_column(column, justify="right" if column != "part" else "left")
    for label, counts in meta["counts"].items():
        table.add_row(label, f"{counts['posts']:,}", f"{counts['labelled']:,}")
    console.print(table)
    if "cold_users" in meta:
        console.print(
            f"{len(meta['cold_users'])} cold-start users held out (base split: {meta['base']})"
        )


# --------------------------------------------------------------------------- features


def _extractor_override(
    name: str | None, model: str | None, units: int | None
) -> dict[str, Any] | None:
    values: dict[str, Any] = {}
    if name is not None:
        values["name"] = None if name.lower() == "none" else name
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
        str | None, typer.Option(help="logmel (default), wav2vec2 or none.")
    ] = None,
    textual: Annotated[str | None, typer.Option(help="minilm (default), bert or none.")] = None,
    visual_model: Annotated[
        str | None, typer.Option(help="Weights folder or hub id for vit.")
    ] = None,
    acoustic_model: Annotated[
        str | None, typer.Option(help="Weights folder or hub id for wav2vec2.")
    ] = None,
    textual_model: Annotated[
        str | None, typer.Option(help="Weights folder or hub id for bert/minilm.")
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
    config: Annotated[Path | None, typer.Option(help="YAML file of ExtractSettings keys.")] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Recompute stores made with other settings.")
    ] = False,
) -> None:
    """Extract visual, acoustic and textual features of every post (resumable: rerun to finish)."""
    from mishon.features.extract import extract_features

    file_values: dict[str, Any] = {}
    if config is not None:
        file_values = load_settings(ExtractSettings, config).model_dump()
    for modality, override in (
        ("visual", _extractor_override(visual, visual_model, visual_units)),
        ("acoustic", _extractor_override(acoustic, acoustic_model, acoustic_units)),
        ("textual", _extractor_override(textual, textual_model, textual_units)),
    ):
        if override:
            base = file_values.get(modality) or ExtractSettings().model_dump()[modality]
            file_values[modality] = {**base, **override}
    settings = load_settings(
        ExtractSettings,
        overrides={
            **file_values,
            "batch_size": batch_size,
            "workers": workers,
            "allow_download": allow_download,
            "device": device,
            "retry_failed": retry_failed or None,
        },
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


# --------------------------------------------------------------------------- graph


@app.command("graph")
@reports_errors
def graph(
    dataset: Annotated[Path, typer.Argument(help="Dataset directory with features and a split.")],
    out: Annotated[Path, typer.Option("--out", help="Run directory to write the graph into.")],
    split: Annotated[
        str | None, typer.Option(help="Split name [the dataset's only split].")
    ] = None,
    k: Annotated[
        int | None, typer.Option(help="Neighbours per node for every edge type [10].")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="YAML file of GraphSettings keys.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a graph in OUT.")] = False,
) -> None:
    """Build the heterogeneous user / visual / acoustic / textual graph of a dataset."""
    from mishon.graph.build import build_graph
    from mishon.graph.io import METADATA, save_graph

    if (out / METADATA).exists() and not overwrite:
        raise MishonError(f"{out} already holds a graph; pass --overwrite or choose another --out")
    overrides: dict[str, Any] = {}
    if k is not None:
        base = load_settings(GraphSettings, config)
        for edge in ("user", "visual", "acoustic", "textual"):
            overrides[edge] = {**getattr(base, edge).model_dump(), "k": k}
    settings = load_settings(GraphSettings, config, overrides)
    with err_console.status("building the graph") as status:
        built = build_graph(dataset, split, settings, stage=lambda name: status.update(name))
    save_graph(built, out)
    meta = built.meta
    table = Table(title=f"graph of {dataset} (split {meta['split']!r}) in {out}")
    for column in ("edge type", "edges", "in-degree min / mean / median / max"):
        table.add_column(column, justify="left" if column == "edge type" else "right")
    for name, info in meta["summary"]["edges"].items():
        d = info["in_degree"]
        table.add_row(
            name,
            f"{info['edges']:,}",
            f"{d['min']} / {d['mean']:.2f} / {d['median']:g} / {d['max']}",
        )
    console.print(table)
    nodes = ", ".join(
        f"{t} {v['nodes']:,} ({v['isolated']:,} isolated)"
        for t, v in meta["summary"]["nodes"].items()
    )
    console.print(f"nodes: {nodes}", highlight=False)
    for modality, reason in meta["skipped_modalities"].items():
        console.print(f"{modality}: left out ({reason})")
    for modality, info in meta["knn_method"].items():
        detail = ", ".join(f"{k} {v}" for k, v in info.items() if k != "method")
        console.print(f"{modality} kNN: {info['method']}" + (f" ({detail})" if detail else ""))
    influence = meta["influence"]
    top = ", ".join(f"{p['user_id']} ({p['score']:.4g})" for p in influence["popular"][:10])
    console.print(
        f"influence measure: {influence['measure']}; popular users: {top}", highlight=False
    )
    cold = meta["cold_start"]
    console.print(
        f"cold-start users: {cold['cold_users']:,}, "
        f"linked by {cold['links']:,} edges to popular users"
    )


# --------------------------------------------------------------------------- evaluation


def print_results(results: list[dict[str, Any]], part: str, title: str = "") -> None:
    """One table per subset (all, warm, cold-start): F1@K, HR@5, NDCG@5, MAP@10 per row."""
    first = results[0]
    console.print(
        f"{title}{part}: {first['cases']['all']:,} cases "
        f"({first['cases']['warm']:,} warm, {first['cases']['cold']:,} cold-start); "
        f"training vocabulary covers {first['vocabulary_coverage']:.1%} of their hashtags",
        highlight=False,
    )
    for subset in ("all", "warm", "cold"):
        if not first["cases"][subset]:
            continue
        table = Table(title=f"{subset} {part} posts")
        table.add_column("recommender", no_wrap=True)
        for k in (1, 3, 5, 10):
            table.add_column(f"F1@{k}", justify="right")
        for column in ("HR@5", "NDCG@5", "MAP@10", "coverage"):
            table.add_column(column, justify="right")
        for result in results:
            m = result[subset]
            table.add_row(
                result["recommender"],
                *(f"{m[f'F1@{k}']:.3f}" for k in (1, 3, 5, 10)),
                f"{m['HR@5']:.3f}",
                f"{m['NDCG@5']:.3f}",
                f"{m['MAP@10']:.3f}",
                f"{result['vocabulary_coverage']:.1%}",
            )
        console.print(table)


@app.command("baselines")
@reports_errors
def baselines(
    dataset: Annotated[Path, typer.Argument(help="Dataset directory with a split (and features).")],
    split: Annotated[
        str | None, typer.Option(help="Split name [the dataset's only split].")
    ] = None,
    part: Annotated[str, typer.Option(help="Evaluate on test, or valid for tuning.")] = "test",
    only: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated subset of popularity,decayed,history,content-knn,content-only."
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="YAML run settings (model, train) for content-only.")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the results here.")
    ] = None,
) -> None:
    """Evaluate the baselines: popularity, time-decayed popularity, user history, content kNN
    and the content-only network (trained here, without the graph)."""
    from mishon.config import RunSettings
    from mishon.data.split_data import load_split_data
    from mishon.data.store import write_json
    from mishon.evaluate.evaluation import baseline_names, check_part, evaluate_baselines
    from mishon.graph.build import default_split
    from mishon.recommenders import BASELINE_NAMES

    check_part(part)
    names = baseline_names(only or list(BASELINE_NAMES))
    settings = load_settings(RunSettings, config)
    data = load_split_data(dataset, split or settings.split or default_split(dataset))
    with err_console.status("fitting") as status:
        results, skipped = evaluate_baselines(
            names, data, part, settings, stage=lambda name: status.update(name)
        )
    for name, why in skipped.items():
        console.print(f"{name}: skipped ({why})")
    print_results(results, part, f"{data.split_name!r} ")
    if json_out is not None:
        write_json(results, json_out)


# --------------------------------------------------------------------------- training


@app.command("train")
@reports_errors
def train(
    dataset: Annotated[Path, typer.Argument(help="Dataset directory with features and a split.")],
    out: Annotated[Path, typer.Option("--out", help="Run directory, e.g. runs/NAME.")],
    config: Annotated[
        Path | None, typer.Option(help="YAML run settings: split, graph, model, train.")
    ] = None,
    split: Annotated[
        str | None, typer.Option(help="Split name [config, else the only one].")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Most epochs [config: 300].")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed [config: 0].")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in OUT from its last checkpoint.")
    ] = False,
) -> None:
    """Build the graph (or reuse the run's) and train MISHON, keeping the best validation F1@K."""
    from mishon.config import RunSettings
    from mishon.train.run import train_model

    base = load_settings(RunSettings, config)
    overrides: dict[str, Any] = {"split": split}
    train_overrides = {"epochs": epochs, "seed": seed}
    if any(v is not None for v in train_overrides.values()):
        overrides["train"] = {
            **base.train.model_dump(),
            **{k: v for k, v in train_overrides.items() if v is not None},
        }
    settings = load_settings(RunSettings, config, overrides)
    select = f"valid F1@{settings.train.select_k}"
    with progress_bar() as bar:
        task = bar.add_task("preparing", total=settings.train.epochs)

        def on_epoch(row: dict[str, Any]) -> None:
            valid = f", {select} {row['valid_f1']:.4f}" if "valid_f1" in row else ""
            bar.update(
                task,
                completed=row["epoch"],
                description=f"loss {row['loss']:.4f}{valid} (best {row['best']:.4f} "
                f"at {row['best_epoch']})",
            )

        _, inputs, _, state = train_model(
            dataset,
            settings,
            out,
            resume=resume,
            stage=lambda name: bar.update(task, description=name),
            progress=on_epoch,
            notice=lambda message: bar.console.print(message, highlight=False),
        )
    why = (
        f"no better {select} in {settings.train.patience} epochs"
        if state.stopped == "patience"
        else "epoch limit"
    )
    console.print(
        f"trained {state.epoch} epochs ({why}); best {select} {state.best_score:.4f} "
        f"at epoch {state.best_epoch}; vocabulary {len(inputs.vocabulary):,} hashtags; "
        f"run in {out}",
        highlight=False,
    )


@app.command("evaluate")
@reports_errors
def evaluate_run(
    run: Annotated[Path, typer.Argument(help="Run directory written by `mishon train`.")],
    part: Annotated[str, typer.Option(help="Evaluate on test, or valid for tuning.")] = "test",
    baselines: Annotated[
        str | None,
        typer.Option(
            help="Also evaluate these baselines (comma-separated, or 'all') in the same table."
        ),
    ] = None,
    dataset: Annotated[
        Path | None, typer.Option(help="The run's dataset, if it has moved since training.")
    ] = None,
) -> None:
    """Metrics @1/3/5/10 of a trained run on all, warm and cold-start posts -> evaluation.json."""
    from mishon.evaluate.evaluation import evaluate_run as run_evaluation
    from mishon.evaluate.evaluation import evaluation_path

    with err_console.status("loading the run") as status:
        evaluation = run_evaluation(
            run, part, baselines, dataset, stage=lambda name: status.update(name)
        )
    for name, why in evaluation.skipped.items():
        console.print(f"{name}: skipped ({why})")
    print_results(evaluation.results, part, f"{run} on {evaluation.split!r} ")
    for subset, ratio in (evaluation.relative_f1_at_5 or {}).items():
        if ratio is not None:
            console.print(f"{subset}: MISHON F1@5 = {ratio:.3f} x the best baseline")
    console.print(f"written: {evaluation_path(run, part)}")


@app.command("recommend")
@reports_errors
def recommend(
    run: Annotated[Path, typer.Argument(help="Run directory written by `mishon train`.")],
    video: Annotated[Path | None, typer.Option(help="The new post's video file.")] = None,
    caption: Annotated[str | None, typer.Option(help="The new post's caption.")] = None,
    user: Annotated[
        str | None, typer.Option(help="Poster's user id; unknown or absent: a new user.")
    ] = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="Hashtags to recommend.")] = 10,
    dataset: Annotated[
        Path | None, typer.Option(help="The run's dataset, if it has moved since training.")
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of a table.")
    ] = False,
) -> None:
    """Top-K hashtags for a new post (video and/or caption) with the reasons behind them, from
    the trained graph's cached states: no retraining."""
    from mishon.recommend.featurize import PostFeaturizer
    from mishon.recommend.inductive import InductiveRecommender, NewPost
    from mishon.train.run import load_run

    if video is None and not caption:
        raise MishonError("give the post's --video, --caption or both")
    if video is not None and not video.is_file():
        raise MishonError(f"video {video} does not exist")
    with err_console.status("loading the run"):
        recommender = InductiveRecommender(load_run(run, dataset))
        featurizer = PostFeaturizer.for_dataset(
            recommender.run.data.dataset, recommender.network.modalities
        )
    with err_console.status("extracting features and ranking"):
        units, timings, notes = featurizer.featurize(video, caption)
        result = recommender.recommend(NewPost(units, user), k)
    if json_out:
        print(json.dumps({**result.as_dict(), "notes": notes, "timings_s": timings}, indent=2))
        return
    who = f"known user {user}" if result.user_known else "a new user (cold start)"
    console.print(f"for {who}; modalities used: {', '.join(units) or 'none'}", highlight=False)
    for note in notes:
        console.print(f"note: {note}", highlight=False)
    table = Table(title=f"top {k} hashtags")
    for column in ("#", "hashtag", "score", "why"):
        table.add_column(column, justify="right" if column in ("#", "score") else "left")
    for rank, (tag, score) in enumerate(result.hashtags, start=1):
        reasons = "; ".join(result.reasons.get(tag, [])) or "learned association"
        table.add_row(str(rank), f"#{tag}", f"{score:.4f}", reasons)
    console.print(table)


@app.command("serve")
@reports_errors
def serve(
    run: Annotated[Path, typer.Argument(help="Run directory written by `mishon train`.")],
    host: Annotated[str | None, typer.Option(help="Interface to bind [127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port [8000].")] = None,
    max_upload_mb: Annotated[float | None, typer.Option(help="Largest upload [50].")] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds per recommendation [60].")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML file of ServeSettings keys.")] = None,
    dataset: Annotated[
        Path | None, typer.Option(help="The run's dataset, if it has moved since training.")
    ] = None,
) -> None:
    """Serve recommendations over HTTP: the page at /, the API under /v1, its docs at /docs."""
    import uvicorn

    from mishon.config import ServeSettings
    from mishon.serve.app import create_app
    from mishon.serve.service import HashtagService

    settings = load_settings(
        ServeSettings,
        config,
        {"host": host, "port": port, "max_upload_mb": max_upload_mb, "timeout_s": timeout},
    )
    with err_console.status("loading the run"):
        service = HashtagService(run, settings, dataset)
    console.print(f"serving {run} on http://{settings.host}:{settings.port}/", highlight=False)
    uvicorn.run(create_app(service), host=settings.host, port=settings.port, log_level="info")


@app.command("report")
@reports_errors
def report(
    run: Annotated[Path, typer.Argument(help="Run directory, evaluated with --baselines.")],
    dataset: Annotated[
        Path | None, typer.Option(help="The run's dataset, if it has moved since training.")
    ] = None,
) -> None:
    """Write RUN/report.html with PNG plots: training curves, metrics @K against the
    baselines, warm vs cold-start users, recall by hashtag frequency, graph summary."""
    from mishon.report import write_report

    with err_console.status("writing the report"):
        path = write_report(run, dataset)
    console.print(f"report: {path}", highlight=False)


@app.command("config")
@reports_errors
def show_config(
    config: Annotated[
        Path | None, typer.Argument(help="A YAML run settings file to check and complete.")
    ] = None,
) -> None:
    """Print the run settings (defaults, or CONFIG completed with them) as documented YAML."""
    from mishon.config import RunSettings, documented_yaml

    print(documented_yaml(load_settings(RunSettings, config)))


@app.command("experiment")
@reports_errors
def experiment(
    name: Annotated[str, typer.Argument(help="ablation, aggregators, thresholds or coldstart.")],
    dataset: Annotated[Path, typer.Argument(help="Dataset directory with features and a split.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the tables, plot and results.")],
    config: Annotated[
        Path | None, typer.Option(help="YAML run settings the variants start from.")
    ] = None,
    split: Annotated[
        str | None, typer.Option(help="Split name [config, else the only one].")
    ] = None,
    seeds: Annotated[int, typer.Option(min=1, help="Seeds per variant (mean and sd).")] = 3,
) -> None:
    """Train and evaluate the variants of one of the paper's experiments; finished variants are
    kept in OUT/variants and skipped when the command is run again."""
    from mishon.config import RunSettings
    from mishon.experiments import EXPERIMENTS, markdown_table, run_experiment

    if name not in EXPERIMENTS:
        raise MishonError(f"unknown experiment {name!r}; choose from {list(EXPERIMENTS)}")
    settings = load_settings(RunSettings, config, {"split": split})
    with err_console.status(f"{name}: starting") as status:
        summary = run_experiment(
            name, dataset, settings, out, seeds, stage=lambda text: status.update(text)
        )
    console.print(markdown_table(summary), highlight=False, markup=False)
    console.print(
        f"written: {out / (name + '.md')}, {out / (name + '.json')}, {out / (name + '.png')}"
    )


def run() -> None:  # pragma: no cover - console entry point convenience
    sys.exit(app())
