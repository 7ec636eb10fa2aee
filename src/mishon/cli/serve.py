"""`mishon recommend` and `mishon serve`: hashtags for new posts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mishon.cli.common import app, console, reports_errors, status
from mishon.config import load_settings
from mishon.errors import MishonError


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
    the trained graph's cached states and the dataset's known posts (MISHON live): no
    retraining."""
    from mishon.recommend.served import load_served
    from mishon.recommenders.inductive import NewPost

    if video is None and not caption:
        raise MishonError("give the post's --video, --caption or both")
    if video is not None and not video.is_file():
        raise MishonError(f"video {video} does not exist")
    with status("loading the run"):
        served = load_served(run, dataset)
    with status("extracting features and ranking"):
        units, timings, notes = served.featurizer.featurize(video, caption)
        result = served.ranker.rank_new(NewPost(units, user), k)
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
    token: Annotated[
        str | None,
        typer.Option(
            envvar="MISHON_TOKEN",
            show_envvar=True,
            help="Bearer token (16+ characters) that recording posts must send [none].",
        ),
    ] = None,
) -> None:
    """Serve recommendations over HTTP: the page at /, the API under /v1, its docs at /docs."""
    import uvicorn

    from mishon.config import ServeSettings
    from mishon.serve.app import create_app
    from mishon.serve.guards import is_loopback
    from mishon.serve.service import HashtagService

    settings = load_settings(
        ServeSettings,
        config,
        {
            "host": host,
            "port": port,
            "max_upload_mb": max_upload_mb,
            "timeout_s": timeout,
            "token": token,
        },
    )
    if not is_loopback(settings.host) and settings.token is None:
        console.print(
            f"[yellow]warning[/]: bound to {settings.host} without a token: anyone who can reach "
            "this port can record posts (and so steer what is recommended). Set --token or "
            "MISHON_TOKEN, and put the service behind TLS (README, 'Exposing the service').",
            highlight=False,
        )
    with status("loading the run"):
        service = HashtagService(run, settings, dataset)
    console.print(f"serving {run} on http://{settings.host}:{settings.port}/", highlight=False)
    uvicorn.run(
        create_app(service),
        host=settings.host,
        port=settings.port,
        log_level="info",
        limit_concurrency=settings.max_connections,
    )
