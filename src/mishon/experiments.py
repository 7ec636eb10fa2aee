"""The paper's experiments as runs of model variants (`mishon experiment NAME DATA`).

Each experiment is a list of variants of one base RunSettings. Every variant is trained with
`seeds` seeds (selection on the validation posts, as always) and evaluated on valid and test;
each (variant, seed) result is written as soon as it exists, so a rerun skips finished work.
The summary gives mean and standard deviation over seeds, as JSON, a Markdown table and a PNG.
With `live`, each variant's network is also evaluated as MISHON live (a row "VARIANT + live";
files NAME[-PROTOCOL]-live.*).

- ablation: full MISHON, no hashtag inputs (the paper's model), no attention, no graph
  (content-only), no user-user edges, no modality-modality edges;
- aggregators: mean, max, min, sum, product;
- thresholds: modality-edge similarity thresholds, and neighbours k;
- coldstart: social-influence linking vs no linking vs content-only, on cold-start users
  (use a cold-start split).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mishon.config import DEFAULT_REFRESH, EdgeSettings, RunSettings
from mishon.data.store import atomic_path, write_json
from mishon.errors import MishonError
from mishon.evaluate.live import select_live_weights
from mishon.evaluate.run import evaluate
from mishon.extras import available
from mishon.graph.build import HeteroGraph, build_graph, default_split
from mishon.recommenders import MishonRecommender
from mishon.recommenders.live import LiveMishon
from mishon.train.run import train_model

FIGURES = ("F1@1", "F1@3", "F1@5", "F1@10", "NDCG@5", "HR@5")
Stage = Callable[[str], None]


@dataclass
class Variant:
    """One configuration of an experiment; `x` places it on a plot's axis where numeric."""

    name: str
    settings: RunSettings
    x: float | None = None


def _with(base: RunSettings, model: dict[str, Any] | None = None, graph: Any = None) -> RunSettings:
    update: dict[str, Any] = {}
    if model:
        update["model"] = base.model.model_copy(update=model)
    if graph is not None:
        update["graph"] = graph
    return base.model_copy(update=update, deep=True)


def ablation(base: RunSettings) -> list[Variant]:
    return [
        Variant("MISHON", base),
        Variant("no hashtag inputs (paper)", _with(base, {"label_inputs": False})),
        Variant("no attention", _with(base, {"attention": False})),
        Variant("no graph (content-only)", _with(base, {"graph": False})),
        Variant("no user-user edges", _with(base, {"user_user_edges": False})),
        Variant("no modality-modality edges", _with(base, {"modality_edges": False})),
    ]


def aggregators(base: RunSettings) -> list[Variant]:
    return [
        Variant(a, _with(base, {"aggregator": a})) for a in ("mean", "max", "min", "sum", "product")
    ]


def _modality_edges(base: RunSettings, k: int, threshold: float) -> RunSettings:
    edge = EdgeSettings(k=k, threshold=threshold)
    graph = base.graph.model_copy(update={"visual": edge, "acoustic": edge, "textual": edge})
    return _with(base, graph=graph)


def thresholds(base: RunSettings) -> list[Variant]:
    k = base.graph.textual.k
    variants = [
        Variant(f"threshold {t:g}, k {k}", _modality_edges(base, k, t), t)
        for t in (0.0, 0.1, 0.2, 0.3, 0.5)
    ]
    t = base.graph.textual.threshold
    variants += [Variant(f"threshold {t:g}, k {n}", _modality_edges(base, n, t)) for n in (5, 20)]
    return variants


def coldstart(base: RunSettings) -> list[Variant]:
    unlinked = base.graph.model_copy(update={"cold_links": 0})
    return [
        Variant("MISHON, social-influence linking", base),
        Variant("MISHON, no linking", _with(base, graph=unlinked)),
        Variant("MISHON without hashtag inputs, linking", _with(base, {"label_inputs": False})),
        Variant("content-only", _with(base, {"graph": False})),
    ]


EXPERIMENTS: dict[str, Callable[[RunSettings], list[Variant]]] = {
    "ablation": ablation,
    "aggregators": aggregators,
    "thresholds": thresholds,
    "coldstart": coldstart,
}


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def variant_slugs(name: str) -> list[str]:
    """The slugs of experiment `name`'s variants (what `only` and the result files name)."""
    return [_slug(v.name) for v in EXPERIMENTS[name](RunSettings())]


def chosen_variants(variants: list[Variant], only: list[str] | None) -> list[Variant]:
    """The `variants` whose slugs are in `only` (all for None); an unknown slug is refused,
    naming the known ones."""
    if only is None:
        return variants
    slugs = [_slug(v.name) for v in variants]
    unknown = [o for o in only if o not in slugs]
    if unknown or not only:
        raise MishonError(f"unknown variant(s) {unknown or '(none given)'}; choose from {slugs}")
    return [v for v, slug in zip(variants, slugs, strict=True) if slug in only]


def run_variant(
    dataset: Path,
    variant: Variant,
    seed: int,
    graph: HeteroGraph,
    protocol: str = "static",
    refresh_every: int = DEFAULT_REFRESH,
    live: bool = False,
) -> dict[str, Any]:
    """Train one variant with one seed; its valid and test results (all, warm, cold) under
    `protocol` (each part ranked by a freshly fitted recommender). With `live`, also the
    variant's network as MISHON live (weights selected on the valid posts): `result["live"]`."""
    train = variant.settings.train.model_copy(update={"seed": seed})
    settings = variant.settings.model_copy(update={"train": train})
    network, inputs, data, state = train_model(dataset, settings, None, graph=graph)

    def ranked(part: str) -> dict[str, Any]:
        recommender = MishonRecommender(network, inputs, variant.name, refresh_every)
        return evaluate(recommender.fit(data), data, part, protocol=protocol)

    result = {
        "variant": variant.name,
        "seed": seed,
        "protocol": protocol,
        "best_epoch": state.best_epoch,
        "epochs": state.epoch,
        "valid": ranked("valid"),
        "test": ranked("test"),
    }
    if live:
        evidence = LiveMishon(network, inputs, f"{variant.name} + live", refresh_every)
        selection = select_live_weights(evidence, data, protocol)
        result["live"] = {
            "weights": asdict(evidence.weights),
            "second_stage": selection.second_stage,
            "valid": evaluate(evidence, data, "valid", protocol=protocol),
            "test": evaluate(evidence.fit(data), data, "test", protocol=protocol),
        }
    return result


def file_suffix(protocol: str, live: bool) -> str:
    """What an experiment's file names add for its protocol (not static) and for --live."""
    return ("" if protocol == "static" else f"-{protocol}") + ("-live" if live else "")


def run_experiment(
    name: str,
    dataset: Path,
    base: RunSettings,
    out: Path,
    seeds: int = 3,
    stage: Stage | None = None,
    protocol: str = "static",
    refresh_every: int = DEFAULT_REFRESH,
    live: bool = False,
    only: list[str] | None = None,
) -> dict[str, Any]:
    """Run experiment `name` on `dataset` into `out` under the evaluation `protocol`; returns
    (and writes) its summary. With `live`, each variant is also evaluated as MISHON live
    (a row "VARIANT + live"). `only`: the variants to run, by slug (`variant_slugs`), else
    all."""
    report = stage or (lambda _text: None)
    variants = chosen_variants(EXPERIMENTS[name](base), only)
    split = base.split or default_split(dataset)
    base = base.model_copy(update={"split": split})
    finished = out / "variants"
    finished.mkdir(parents=True, exist_ok=True)
    graphs: dict[str, HeteroGraph] = {}
    results: list[dict[str, Any]] = []
    total = len(variants) * seeds
    for number, (variant, seed) in enumerate(
        ((v, base.train.seed + s) for v in variants for s in range(seeds)), start=1
    ):
        tag = file_suffix(protocol, live)
        path = finished / f"{_slug(variant.name)}{tag}-seed{seed}.json"
        if path.is_file():
            results.append(json.loads(path.read_text("utf-8")))
            continue
        key = variant.settings.graph.model_dump_json()
        if key not in graphs:
            report(f"[{number}/{total}] {variant.name}: building its graph")
            graphs.clear()  # one graph in memory at a time
            graphs[key] = build_graph(dataset, split, variant.settings.graph)
        report(f"[{number}/{total}] {variant.name}, seed {seed}: training")
        try:
            result = run_variant(dataset, variant, seed, graphs[key], protocol, refresh_every, live)
        except MishonError as exc:  # e.g. a diverging aggregator: recorded, not fatal
            report(f"[{number}/{total}] {variant.name}, seed {seed}: failed: {exc}")
            results.append({"variant": variant.name, "seed": seed, "error": str(exc)})
            continue  # not written: a rerun tries it again
        result["x"] = variant.x
        write_json(result, path)
        results.append(result)
    if live:  # each variant's live evaluation as a variant of its own
        variants = [
            row
            for variant in variants
            for row in (variant, Variant(f"{variant.name} + live", variant.settings, variant.x))
        ]
        results += [
            {"variant": f"{r['variant']} + live", "seed": r["seed"], **r["live"]}
            for r in results
            if "live" in r
        ]
    summary = summarise(name, dataset, split, variants, results, seeds)
    summary["protocol"] = protocol
    stem = name + file_suffix(protocol, live)
    write_json(summary, out / f"{stem}.json")
    with atomic_path(out / f"{stem}.md") as tmp:
        tmp.write_text(markdown_table(summary), "utf-8")
    if available("matplotlib"):
        plot(summary, out / f"{stem}.png")
    else:
        summary["plot"] = "not drawn: needs the report extra (pip install 'mishon[report]')"
    return summary


def _mean_sd(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


def summarise(
    name: str,
    dataset: Path,
    split: str,
    variants: list[Variant],
    results: list[dict[str, Any]],
    seeds: int,
) -> dict[str, Any]:
    rows = []
    for variant in variants:
        mine = [r for r in results if r["variant"] == variant.name and "error" not in r]
        failed = [r for r in results if r["variant"] == variant.name and "error" in r]
        if not mine:
            rows.append({"variant": variant.name, "x": variant.x, "failed": failed[0]["error"]})
            continue
        test = mine[0]["test"]
        row: dict[str, Any] = {
            "variant": variant.name,
            "x": variant.x,
            "seeds": [r["seed"] for r in mine],
            "failed_seeds": [r["seed"] for r in failed],
            "valid F1@5": _mean_sd([r["valid"]["all"]["F1@5"] for r in mine]),
        }
        for subset in ("all", "warm", "cold"):
            if not test["cases"][subset]:
                continue
            for figure in FIGURES:
                row[f"{subset} {figure}"] = _mean_sd([r["test"][subset][figure] for r in mine])
        rows.append(row)
    first = next((r["test"] for r in results if "test" in r), None)
    if first is None:
        raise MishonError(f"every variant of {name} failed: {results[0]['error']}")
    return {
        "experiment": name,
        "dataset": str(dataset),
        "split": split,
        "seeds": seeds,
        "cases": first["cases"],
        "vocabulary_coverage": first["vocabulary_coverage"],
        "rows": rows,
    }


def _cell(value: dict[str, float] | None) -> str:
    if value is None:
        return "-"
    return f"{value['mean']:.4f} ± {value['sd']:.4f}"


def markdown_table(summary: dict[str, Any]) -> str:
    """The summary as a Markdown table: mean ± sd over seeds, test unless marked valid."""
    subsets = [s for s in ("all", "warm", "cold") if summary["cases"][s]]
    columns = ["valid F1@5"] + [f"all {f}" for f in FIGURES[:4]] + ["all NDCG@5"]
    columns += [f"{s} F1@5" for s in subsets if s != "all"]
    lines = [
        f"# {summary['experiment']} on {summary['dataset']} (split {summary['split']})",
        "",
        f"Test cases: {summary['cases']['all']:,} ({summary['cases']['warm']:,} warm, "
        f"{summary['cases']['cold']:,} cold-start); mean ± sd over {summary['seeds']} seed(s). "
        "Columns are test figures except 'valid F1@5', the selection figure.",
        "",
        "| variant | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for row in summary["rows"]:
        if "failed" in row:
            lines.append(
                f"| {row['variant']} | failed: {row['failed']} |" + " |" * (len(columns) - 1)
            )
            continue
        lines.append(
            f"| {row['variant']} | " + " | ".join(_cell(row.get(c)) for c in columns) + " |"
        )
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, Any], path: Path) -> None:
    """Bars of test F1@5 (all posts, and cold-start where there are any) with ±sd."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in summary["rows"] if "failed" not in row]
    subsets = ["all"] + (["cold"] if summary["cases"]["cold"] else [])
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(rows)), 4.0))
    width = 0.8 / len(subsets)
    for offset, subset in enumerate(subsets):
        values = [row[f"{subset} F1@5"] for row in rows]
        ax.bar(
            [i + offset * width for i in range(len(rows))],
            [v["mean"] for v in values],
            width,
            yerr=[v["sd"] for v in values],
            capsize=3,
            label=f"{subset} test posts",
        )
    ax.set_xticks([i + width * (len(subsets) - 1) / 2 for i in range(len(rows))])
    ax.set_xticklabels([row["variant"] for row in rows], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("F1@5")
    ax.set_title(f"{summary['experiment']} ({summary['seeds']} seed(s), mean ± sd)")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
