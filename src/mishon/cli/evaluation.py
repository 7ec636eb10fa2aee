"""`mishon baselines`, `evaluate`, `report` and `experiment`: measuring runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from mishon.cli.common import (
    Protocol,
    ProtocolOption,
    RefreshOption,
    SetOption,
    app,
    console,
    print_results,
    reports_errors,
    status,
)
from mishon.config import DEFAULT_REFRESH, load_settings
from mishon.errors import MishonError


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
            "--baselines",
            "--only",
            help="Comma-separated subset of popularity,decayed,history,sound,content-knn,"
            "content-only (the name `mishon evaluate` uses; --only is the same) [all].",
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="YAML run settings (model, train) for content-only.")
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the results as JSON instead of tables.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write the results as JSON to this file.")
    ] = None,
    assignments: SetOption = None,
    protocol: ProtocolOption = "static",
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
    settings = load_settings(RunSettings, config, assignments=assignments)
    data = load_split_data(dataset, split or settings.split or default_split(dataset))
    with status("fitting") as shown:
        results, skipped = evaluate_baselines(
            names, data, part, settings, lambda name: shown.update(name), protocol
        )
    if out is not None:
        write_json(results, out)
    if json_out:  # the same switch as `data stats --json` and `recommend --json`
        print(json.dumps({"results": results, "skipped": skipped}, indent=2))
        return
    for name, why in skipped.items():
        console.print(f"{name}: skipped ({why})")
    print_results(results, part, f"{data.split_name!r} ({protocol}) ")


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
    protocol: ProtocolOption = "static",
    refresh: RefreshOption = DEFAULT_REFRESH,
    live: Annotated[
        bool,
        typer.Option(
            help="Also evaluate MISHON live (the network plus the known posts' evidence, "
            "weights selected on the validation posts)."
        ),
    ] = True,
    evidence: Annotated[
        str | None,
        typer.Option(
            help="MISHON live's evidence, comma-separated (an ablation) [all: "
            "model,neighbours,own_posts,history,content,popularity,linked_users,model_outside,sound]."
        ),
    ] = None,
    hashtag_names: Annotated[
        bool,
        typer.Option(
            help="Give the rows of hashtags outside the vocabulary (evidence model_outside) "
            "their segmented names too, through the dataset's textual extractor."
        ),
    ] = False,
    placement: Annotated[
        Literal["graph", "new"],
        typer.Option(
            help="MISHON live's posts: graph (their nodes' states, the paper's protocol) or new "
            "(placed by the inductive path among the training posts, as the service places "
            "a post)."
        ),
    ] = "graph",
    assignments: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="MISHON live's setting KEY=VALUE (EvidenceSettings, docs/design.md: "
            "neighbours, content_neighbours, model_candidates, index.exact_max, index.nprobe, "
            "second_stage.mode, ...), e.g. index.exact_max=0 to search the known posts in the "
            "index, second_stage.mode=search to rank by the weights alone; repeatable.",
        ),
    ] = None,
) -> None:
    """Metrics @1/3/5/10 of a trained run on all, warm and cold-start posts -> evaluation.json."""
    from mishon.config import EvidenceSettings
    from mishon.evaluate.evaluation import evaluate_run as run_evaluation
    from mishon.evaluate.evaluation import evaluation_path
    from mishon.recommenders.evidence import EVIDENCE

    evidence_settings = load_settings(EvidenceSettings, assignments=assignments)
    chosen = tuple(e.strip() for e in evidence.split(",")) if evidence else EVIDENCE
    with status(f"evaluating {run}") as shown:
        evaluation = run_evaluation(
            run,
            part,
            baselines,
            dataset,
            stage=lambda name: shown.update(name),
            protocol=protocol,
            refresh_every=refresh,
            live=live,
            evidence=chosen,
            hashtag_names=hashtag_names,
            evidence_settings=evidence_settings,
            placement=placement,
        )
    for name, why in evaluation.skipped.items():
        console.print(f"{name}: skipped ({why})")
    print_results(evaluation.results, part, f"{run} on {evaluation.split!r} ({protocol}) ")
    for result in evaluation.results:
        if result.get("note"):
            console.print(f"{result['recommender']}: {result['note']}", highlight=False)
        if "second_stage" in result:
            console.print(f"{result['recommender']}: {second_stage_line(result['second_stage'])}")
    lines = ratio_lines(evaluation)
    for line in lines:
        console.print(line, highlight=False)
    if lines:
        console.print(reading(evaluation.results[0]["cases"]["all"]), highlight=False)
    written = evaluation_path(run, part, protocol, chosen, hashtag_names, placement, live)
    console.print(f"written: {written}")


def reading(cases: int) -> str:
    """How to read an evaluation with baselines, in a few sentences."""
    return (
        f"How to read this: F1@5 is the harmonic mean of precision and recall of each post's "
        f"top 5 hashtags, over {cases:,} test posts. Each 95% interval comes from resampling "
        "those posts; a ratio is 'better' or 'worse' only when its whole interval lies above "
        "or below 1, and 'no clear difference' when it holds 1. MISHON is the paper's network; "
        "MISHON live ranks with everything known when a post is ranked (docs/design.md)."
    )


def ratio_lines(evaluation: Any) -> list[str]:
    """MISHON's F1@5 over the best baseline's, per subset, with the paired 95% interval and
    what it means: a ratio whose interval holds 1 is no difference these posts can show."""
    from mishon.evaluate.compare import ratio_rows
    from mishon.evaluate.uncertainty import interval_text, reading

    lines = []
    for row in ratio_rows(evaluation.model_dump(mode="json")):
        line = f"{row.subset}: {row.name} F1@5 = {row.ratio:.3f} x the best baseline"
        if row.best:
            line += f" ({row.best})"
        if row.interval:
            line += f", 95% interval {interval_text(row.interval)}: {reading(row.interval)}"
        lines.append(line)
    return lines


def second_stage_line(record: dict) -> str:
    """How MISHON live ranked, in words: the ranker chosen and each one's validation folds."""
    folds = record.get("folds_f1_at_5") or {}
    if not folds.get("search"):
        return f"ranked by the {'learned ranker' if record['chosen'] == 'learned' else 'weights'}"
    shown = ", ".join(
        f"{name} {' / '.join(f'{v:.4f}' for v in values)}" for name, values in folds.items()
    )
    chosen = "the learned ranker" if record["chosen"] == "learned" else "the weight search"
    return f"ranked by {chosen} (validation F1@5 per fold: {shown})"


@app.command("report")
@reports_errors
def report(
    run: Annotated[Path, typer.Argument(help="Run directory, evaluated with --baselines.")],
    dataset: Annotated[
        Path | None, typer.Option(help="The run's dataset, if it has moved since training.")
    ] = None,
    protocol: Annotated[
        Protocol,
        typer.Option(help="Which saved evaluation to report: static, known-past or stream."),
    ] = "static",
) -> None:
    """Write RUN/report.html, one self-contained page: training curves, metrics @K against
    the baselines with 95% intervals, MISHON's ratio to the best baseline, warm vs
    cold-start users, recall by hashtag frequency, graph summary."""
    from mishon.report import write_report

    with status("writing the report"):
        path = write_report(run, dataset, protocol)
    console.print(f"report: {path}", highlight=False)


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
    assignments: SetOption = None,
    protocol: ProtocolOption = "static",
    refresh: RefreshOption = DEFAULT_REFRESH,
    live: Annotated[
        bool,
        typer.Option(help="Also evaluate each variant as MISHON live (rows 'VARIANT + live')."),
    ] = False,
    only: Annotated[
        str | None,
        typer.Option(
            help="Run only these variants, comma-separated slugs as in OUT/variants "
            "(e.g. mishon,no-graph--content-only) [all]."
        ),
    ] = None,
) -> None:
    """Train and evaluate the variants of one of the paper's experiments; finished variants are
    kept in OUT/variants and skipped when the command is run again."""
    from mishon.config import RunSettings
    from mishon.experiments import EXPERIMENTS, file_suffix, markdown_table, run_experiment

    if name not in EXPERIMENTS:
        raise MishonError(f"unknown experiment {name!r}; choose from {list(EXPERIMENTS)}")
    settings = load_settings(RunSettings, config, {"split": split}, assignments)
    with status(f"{name}: starting") as shown:
        summary = run_experiment(
            name,
            dataset,
            settings,
            out,
            seeds,
            stage=lambda text: shown.update(text),
            protocol=protocol,
            refresh_every=refresh,
            live=live,
            only=[v.strip() for v in only.split(",") if v.strip()] if only else None,
        )
    console.print(markdown_table(summary), highlight=False, markup=False)
    stem = name + file_suffix(protocol, live)
    console.print(
        f"written: {out / (stem + '.md')}, {out / (stem + '.json')}, {out / (stem + '.png')}"
    )
