"""`mishon train` and `mishon config`: training runs and their settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mishon.cli.common import SetOption, app, console, progress_bar, reports_errors
from mishon.config import load_settings


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
    assignments: SetOption = None,
) -> None:
    """Build the graph (or reuse the run's) and train MISHON, keeping the best validation F1@K.

    Under `torchrun --nproc-per-node N -m mishon train ...` the processes train together
    (needs train.batch_size); process 0 reports and writes the run.
    """
    from mishon.config import RunSettings
    from mishon.train.distributed import from_environment
    from mishon.train.run import train_model

    settings = load_settings(
        RunSettings,
        config,
        {"split": split, "train": {"epochs": epochs, "seed": seed}},
        assignments,
    )
    if not from_environment().is_main:
        train_model(dataset, settings, out, resume=resume)
        return
    select = f"valid F1@{settings.train.select_k}"
    with progress_bar() as bar:
        task = bar.add_task("preparing", total=settings.train.epochs)

        def on_epoch(row: dict[str, Any]) -> None:
            valid = f", {select} {row['valid_f1']:.4f}" if "valid_f1" in row else ""
            best = f" (best {row['best']:.4f} at {row['best_epoch']})" if row["best"] >= 0 else ""
            bar.update(
                task, completed=row["epoch"], description=f"loss {row['loss']:.4f}{valid}{best}"
            )

        def on_step(epoch: int, done: int, steps: int) -> None:
            bar.update(task, description=f"epoch {epoch}: step {done}/{steps}")

        _, inputs, _, state = train_model(
            dataset,
            settings,
            out,
            resume=resume,
            stage=lambda name: bar.update(task, description=name),
            progress=on_epoch,
            notice=lambda message: bar.console.print(message, highlight=False),
            steps=on_step,
        )
    why = (
        f"no better {select} in {settings.train.patience} epochs"
        if state.stopped == "patience"
        else "epoch limit"
    )
    best = (
        f"best {select} {state.best_score:.4f} at epoch {state.best_epoch}"
        if state.best_score >= 0
        else f"no validation posts: the weights of epoch {state.best_epoch} (the last) kept"
    )
    console.print(
        f"trained {state.epoch} epochs ({why}); {best}; vocabulary "
        f"{len(inputs.vocabulary):,} hashtags; run in {out}",
        highlight=False,
    )


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
