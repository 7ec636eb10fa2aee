"""What every command shares: the Typer apps, consoles, error reporting and progress output."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from functools import wraps
from typing import Annotated, Any, Literal, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from typer.core import TyperGroup

from mishon import __version__
from mishon.errors import InputError, MishonError

# the pipeline's order, for `mishon --help`
COMMAND_ORDER = (
    "data", "extract", "features", "graph", "train", "evaluate", "baselines", "report",
    "experiment", "recommend", "serve", "config",
)  # fmt: skip


class PipelineOrder(TyperGroup):
    """Lists the commands in the order the pipeline runs them."""

    def list_commands(self, ctx: Any) -> list[str]:
        rank = {name: i for i, name in enumerate(COMMAND_ORDER)}
        return sorted(super().list_commands(ctx), key=lambda n: rank.get(n, len(rank)))


# Help texts are plain text: Rich markup would eat the "[default]" notes in brackets.
app = typer.Typer(
    name="mishon",
    help="MISHON: hybrid graph-based hashtag recommendation for micro-videos.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion for bash, zsh, fish, PowerShell
    rich_markup_mode=None,
    cls=PipelineOrder,
)
data_app = typer.Typer(
    help="Datasets: import, synthesise, validate, describe, split.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(data_app, name="data")
features_app = typer.Typer(
    help="Feature stores: import precomputed vectors, check, describe.",
    no_args_is_help=True,
    rich_markup_mode=None,
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
            # escaped: a message may hold brackets (a list, "mishon[serve]") Rich would eat
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False,
                              soft_wrap=True)  # fmt: skip
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


SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override one setting, KEY=VALUE with a dotted key (train.epochs=5, "
        "model.graph=false); repeatable, applied after --config and the other options.",
    ),
]

Protocol = Literal["static", "known-past", "stream"]
ProtocolOption = Annotated[
    Protocol,
    typer.Option(
        help="What recommenders know: static (training posts), known-past (+ validation "
        "posts) or stream (+ each evaluated post once ranked, in time order).",
    ),
]
RefreshOption = Annotated[
    int,
    typer.Option(
        min=0,
        help="stream: MISHON encodes the graph again after this many revealed posts "
        "(1 = after each, exact and slow; 0 = never during the stream, as the service).",
    ),
]

LOG_EVERY_S = 10.0  # seconds between progress lines when output goes to a log


def progress_bar() -> Progress | LogProgress:
    """A live progress bar on a terminal; in a log or CI, a plain line every few seconds."""
    if not err_console.is_terminal:
        return LogProgress(err_console)
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )


class LogProgress:
    """The part of Rich's Progress the commands use, written as plain timestamped lines.

    A line is printed when a task starts, when its description changes to a new stage (at most
    every `every` seconds while it keeps changing, as training's per-epoch figures do), every
    `every` seconds of progress, and once at the end.
    """

    def __init__(self, console: Console, every: float = LOG_EVERY_S) -> None:
        self.console = console
        self.every = every
        self.tasks: dict[TaskID, dict[str, Any]] = {}
        self.started = time.monotonic()
        self.last_line = -float("inf")

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        for task in self.tasks:
            self._line(task)

    def add_task(self, description: str, total: float | None = None, **_: Any) -> TaskID:
        task = TaskID(len(self.tasks))
        self.tasks[task] = {
            "description": description,
            "total": total,
            "completed": 0,
            "started": time.monotonic(),
        }
        self._line(task)
        return task

    def update(
        self,
        task: TaskID,
        *,
        description: str | None = None,
        total: float | None = None,
        completed: float | None = None,
        advance: float | None = None,
        **_: Any,
    ) -> None:
        state = self.tasks[task]
        if total is not None:
            state["total"] = total
        if completed is not None:
            state["completed"] = completed
        if advance is not None:
            state["completed"] += advance
        if description is not None:
            state["description"] = description
        if time.monotonic() - self.last_line >= self.every:
            self._line(task)

    def advance(self, task: TaskID, advance: float = 1) -> None:
        self.update(task, advance=advance)

    def _line(self, task: TaskID) -> None:
        state = self.tasks[task]
        done = f"{state['completed']:,.0f}"
        if state["total"]:
            done += f"/{state['total']:,.0f}"
            spent = time.monotonic() - state["started"]
            left = state["total"] - state["completed"]
            if state["completed"] and left > 0:  # the rate so far, over what is left
                done += f", about {_duration(spent / state['completed'] * left)} left"
        elapsed = time.monotonic() - self.started
        self.console.print(
            f"[{elapsed:7.1f} s] {state['description']} ({done})", highlight=False, markup=False
        )
        self.last_line = time.monotonic()


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class LogStatus:
    """Rich's status spinner for logs: each new status is one plain line."""

    def __init__(self, console: Console, message: str) -> None:
        self.console = console
        self.started = time.monotonic()
        self.update(message)

    def __enter__(self) -> LogStatus:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        self.console.print(f"[{elapsed:7.1f} s] {message}", highlight=False, markup=False)


def status(message: str) -> Any:
    """A spinner with `message` on a terminal, a line per status in a log."""
    if not err_console.is_terminal:
        return LogStatus(err_console, message)
    return err_console.status(message)


def print_results(results: list[dict[str, Any]], part: str, title: str = "") -> None:
    """One table per subset (all, warm, cold-start): F1@K, HR@5, NDCG@5, MAP@10 per row."""
    from mishon.evaluate.uncertainty import interval_text

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
            if k == 5:
                table.add_column("F1@5 95%", justify="right")
        for column in ("HR@5", "NDCG@5", "MAP@10", "coverage"):
            table.add_column(column, justify="right")
        for result in results:
            m = result[subset]
            figures = [f"{m[f'F1@{k}']:.3f}" for k in (1, 3, 5, 10)]
            figures.insert(3, interval_text(result.get("F1@5 95%", {}).get(subset)))
            table.add_row(
                result["recommender"],
                *figures,
                f"{m['HR@5']:.3f}",
                f"{m['NDCG@5']:.3f}",
                f"{m['MAP@10']:.3f}",
                f"{result['vocabulary_coverage']:.1%}",
            )
        console.print(table)
    new = first.get("new_hashtags", {}).get("occurrences", 0)
    if new:
        table = Table(title=f"recall of {part} hashtag occurrences, apart")
        table.add_column("recommender", no_wrap=True)
        for column in ("new R@5", "new R@10", "known R@5", "known R@10"):
            table.add_column(column, justify="right")
        for result in results:
            fresh, known = result["new_hashtags"], result["known_hashtags"]
            table.add_row(
                result["recommender"],
                *(f"{part_[f'R@{k}']:.3f}" for part_ in (fresh, known) for k in (5, 10)),
            )
        console.print(table)
        console.print(
            f"new: {new:,} occurrences of hashtags no training post used; known: "
            f"{first['known_hashtags']['occurrences']:,}",
            highlight=False,
        )
