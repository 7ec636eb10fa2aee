"""Commands of `mishon data`: import, validate, stats, synth, split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from mishon.cli.common import console, data_app, progress_bar, reports_errors, status
from mishon.config import (
    ImportSettings,
    SplitSettings,
    SynthSettings,
    load_settings,
)
from mishon.errors import InputError


@data_app.command("import")
@reports_errors
def data_import(
    src: Annotated[
        list[Path],
        typer.Argument(
            help="Source file(s) (csv/tsv/jsonl: several of one layout import together) or "
            "folder (howyoutagtweets)."
        ),
    ],
    out: Annotated[Path, typer.Argument(help="Dataset directory to create.")],
    format: Annotated[
        Literal["csv", "tsv", "jsonl", "howyoutagtweets"],
        typer.Option("--format", "-f", help="The source's layout."),
    ],
    map: Annotated[
        str,
        typer.Option(
            "--map",
            help="FIELD=COLUMN pairs, comma separated, e.g. post_id=id,user_id=author,caption=text,"
            "hashtags=tags,created_at=time (fields: post_id user_id caption hashtags video "
            "created_at sound duration likes comments shares views followers total_likes "
            "total_posts split).",
        ),
    ] = "",
    original_sound: Annotated[
        list[str] | None,
        typer.Option(
            "--original-sound",
            help="A sound title meaning the author's own audio, beside the built-in ones "
            "('original sound' in 33 languages); repeatable.",
        ),
    ] = None,
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
        Literal["copy", "hardlink", "symlink"],
        typer.Option("--media", help="How video files enter the dataset."),
    ] = "copy",
    encoding: Annotated[
        str, typer.Option("--encoding", help="Text encoding of the source.")
    ] = "utf-8-sig",
    allow_outside_media: Annotated[
        bool,
        typer.Option(
            "--allow-outside-media",
            help="Accept video paths that resolve outside the source's folder.",
        ),
    ] = False,
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
            "allow_outside_media": allow_outside_media,
            "original_sound_titles": original_sound or [],
        },
    )
    named = str(src[0]) if len(src) == 1 else f"{len(src)} sources"
    with status(f"importing {named}"):
        result = import_dataset(src, out, settings, overwrite=overwrite)
    merged = f", {result.merged} repeated record(s) of a post merged" if result.merged else ""
    console.print(
        f"imported [bold]{len(result.posts)}[/] posts of {result.records_read} records into "
        f"{out}{merged}"
    )
    if result.implied:
        console.print(
            f"columns named like fields, read as them: {', '.join(result.implied)}",
            highlight=False,
        )
    if result.hashtags_cut:
        console.print(
            f"{result.hashtags_cut} hashtag(s) ended at a space inside a list item (kept up to it)"
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
        (
            "posts with a sound",
            f"{stats['media']['with_sound']:,} ({stats['media']['sounds']:,} sounds)",
        ),
        ("posts with a duration", f"{stats['media']['with_duration']:,}"),
        ("engagement fields", ", ".join(stats["engagement_fields"]) or "none"),
        ("author counters", ", ".join(stats["user_counters"]) or "none"),
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
        Literal["temporal", "random", "given", "cold-start"] | None,
        typer.Option(
            "--strategy",
            help="How posts are split [given where the dataset ships a split, else temporal "
            "where posts have times, else random].",
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
        Literal["temporal", "random", "given"] | None,
        typer.Option("--cold-base", help="cold-start: split for warm users [auto]."),
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed [0].")] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a split of the same name.")
    ] = False,
) -> None:
    """Assign posts to train / valid / test and store the split under DATASET/splits/."""
    from mishon.data.splits import split_dataset

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
    split_name, meta = split_dataset(dataset, settings, name, overwrite)
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
