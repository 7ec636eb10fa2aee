"""`mishon recommend` and `mishon serve`: hashtags for new posts."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mishon.cli.common import app, console, reports_errors, status
from mishon.config import load_settings


@app.command("recommend")
@reports_errors
def recommend(
    run: Annotated[Path, typer.Argument(help="Run directory written by `mishon train`.")],
    video: Annotated[Path | None, typer.Option(help="The new post's video file.")] = None,
    caption: Annotated[str | None, typer.Option(help="The new post's caption.")] = None,
    sound: Annotated[
        str | None, typer.Option(help="The title or id of the sound the post uses.")
    ] = None,
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
    """Top-K hashtags for a new post (video, caption, sound) with the reasons behind them, from
    the trained graph's cached states and the dataset's known posts (MISHON live): no
    retraining."""
    from mishon.recommend.served import check_post, load_served

    check_post(video, caption, k, sound)
    with status("loading the run"):
        served = load_served(run, dataset)
    with status("extracting features and ranking"):
        post, timings, notes = served.featurizer.new_post(video, caption, sound, user)
        result = served.ranker.rank_new(post, k)
    if json_out:
        print(json.dumps({**result.as_dict(), "notes": notes, "timings_s": timings}, indent=2))
        return
    who = f"known user {user}" if result.user_known else "a new user (cold start)"
    console.print(f"for {who}; modalities used: {', '.join(post.units) or 'none'}", highlight=False)
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
            help="Bearer token (16+ characters) that recording posts and reloads must send [none].",
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            envvar="MISHON_DB",
            show_envvar=True,
            help="Record store: sqlite:///PATH or postgresql://USER@HOST:PORT/DB (replicas "
            "share one) [SQLite in the state folder].",
        ),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(help="Folder for the service's own files [serve-state/ beside RUN]."),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Service processes on this host, each with the whole model, sharing the "
            "port and the record store; SIGHUP replaces them one by one with the run "
            "directory read again.",
        ),
    ] = 1,
) -> None:
    """Serve recommendations over HTTP: the page at /, the API under /v1, its docs at /docs,
    /healthz, /readyz and /metrics. Every ServeSettings key can also come from an environment
    variable MISHON_<KEY> (nested keys joined by __). SIGHUP or POST /v1/admin/reload swaps in
    the run directory, read again, without downtime."""
    from mishon.extras import require

    for module in ("fastapi", "python_multipart", "prometheus_client"):
        require(module, "serve", "mishon serve")
    uvicorn = require("uvicorn", "serve", "mishon serve")

    from mishon.config import ServeSettings
    from mishon.serve.app import prepare_serving_process
    from mishon.serve.guards import is_loopback

    settings = load_settings(
        ServeSettings,
        config,
        {
            "host": host,
            "port": port,
            "max_upload_mb": max_upload_mb,
            "timeout_s": timeout,
            "token": token,
            "db": db,
            "state_dir": state_dir,
        },
        env_prefix="MISHON_",
    )
    if not is_loopback(settings.host) and settings.token is None:
        console.print(
            f"[yellow]warning[/]: bound to {settings.host} without a token: anyone who can reach "
            "this port can record posts (and so steer what is recommended). Set --token or "
            "MISHON_TOKEN, and put the service behind TLS (README, 'Exposing the service').",
            highlight=False,
        )
    prepare_serving_process(run, settings)
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "limit_concurrency": settings.max_connections,
        "access_log": False,  # one JSON line a request instead (serve/observe.py)
        "timeout_graceful_shutdown": settings.timeout_s,
        # header deadline and per-client bound; by name, so --workers processes import it
        "http": "mishon.serve.protocol:GuardedH11Protocol",
    }
    if workers > 1:
        from mishon.serve.app import WORKER_SPEC, worker_spec

        os.environ[WORKER_SPEC] = worker_spec(run, dataset, settings)
        console.print(
            f"serving {run} on http://{settings.host}:{settings.port}/ with {workers} workers",
            highlight=False,
        )
        uvicorn.run(
            "mishon.serve.app:worker_app",
            factory=True,
            workers=workers,
            timeout_worker_healthcheck=settings.worker_start_s,
            **common,
        )
        return
    from mishon.serve.app import create_app
    from mishon.serve.service import HashtagService

    with status("loading the run"):
        service = HashtagService(run, settings, dataset)
    signal.signal(signal.SIGHUP, lambda *_: _reload_in_background(service))
    console.print(f"serving {run} on http://{settings.host}:{settings.port}/", highlight=False)
    try:
        uvicorn.run(create_app(service), **common)
    finally:
        service.close()


def _reload_in_background(service: Any) -> None:
    """SIGHUP: read the run directory again and swap it in; a failure keeps the old model."""
    import logging
    import threading

    def reload() -> None:
        try:
            service.reload()
        except Exception:
            logging.getLogger("mishon.serve").exception("reload on SIGHUP failed")

    threading.Thread(target=reload, name="reload", daemon=True).start()
