"""`mishon report RUN`: one self-contained HTML page about a trained run, with PNG plots.

Sections: training curves (history.csv), metrics @K against the baselines and warm vs
cold-start users (the run's evaluation-test.json, made by `mishon evaluate --baselines`), recall
by how often a hashtag appeared in training (computed here on the test posts), and the graph
summary (graph.json). Plots are written beside report.html and linked, not inlined.
"""

from __future__ import annotations

import csv
import html
from collections import Counter
from pathlib import Path
from typing import Any

from mishon.data.store import atomic_path
from mishon.evaluate.evaluation import load_evaluation
from mishon.recommenders import MishonRecommender
from mishon.train.run import load_run

BUCKETS = ((0, 0), (1, 1), (2, 5), (6, 20), (21, 100), (101, None))
KS = (1, 3, 5, 10)


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> str:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    _plt().close(fig)
    return path.name


def training_curves(run: Path) -> str | None:
    rows = list(csv.DictReader((run / "history.csv").open(encoding="utf-8")))
    if not rows:
        return None
    plt = _plt()
    fig, left = plt.subplots(figsize=(7, 3.6))
    epochs = [int(r["epoch"]) for r in rows]
    left.plot(epochs, [float(r["loss"]) for r in rows], color="tab:blue", label="training loss")
    left.set_xlabel("epoch")
    left.set_ylabel("cross-entropy", color="tab:blue")
    valid = [(int(r["epoch"]), float(r["valid_f1"])) for r in rows if r.get("valid_f1")]
    if valid:
        right = left.twinx()
        right.plot(*zip(*valid, strict=True), "o-", color="tab:orange", label="valid F1@5")
        right.set_ylabel("valid F1@K", color="tab:orange")
    left.set_title("training curves")
    fig.tight_layout()
    return _save(fig, run / "report-training.png")


def metrics_at_k(run: Path, evaluation: dict[str, Any]) -> str:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for axis, metric in zip(axes, ("F1", "NDCG"), strict=True):
        for result in evaluation["results"]:
            values = [result["all"][f"{metric}@{k}"] for k in KS]
            style = "o-" if result["recommender"].startswith("MISHON") else ".--"
            axis.plot(KS, values, style, label=result["recommender"])
        axis.set_xticks(KS)
        axis.set_xlabel("K")
        axis.set_ylabel(f"{metric}@K")
    axes[0].legend(fontsize=7)
    fig.suptitle("test posts: MISHON against the baselines")
    fig.tight_layout()
    return _save(fig, run / "report-metrics.png")


def warm_and_cold(run: Path, evaluation: dict[str, Any]) -> str | None:
    results = evaluation["results"]
    subsets = [s for s in ("warm", "cold") if results[0]["cases"][s]]
    if len(subsets) < 2:
        return None
    plt = _plt()
    fig, axis = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / len(results)
    for i, result in enumerate(results):
        axis.bar(
            [x + i * width for x in range(len(subsets))],
            [result[s]["F1@5"] for s in subsets],
            width,
            label=result["recommender"],
        )
    axis.set_xticks([x + 0.4 - width / 2 for x in range(len(subsets))])
    axis.set_xticklabels([f"{s} users ({results[0]['cases'][s]:,} posts)" for s in subsets])
    axis.set_ylabel("F1@5")
    axis.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, run / "report-cold.png")


def recall_by_frequency(run: Path, loaded: Any) -> tuple[str, list[dict[str, Any]]]:
    """Recall@10 of the true test hashtags, grouped by their number of training uses."""
    data = loaded.data
    counts = Counter(t for tags in data.posts.loc[data.is_train, "hashtags"] for t in tags)
    cases = data.cases("test")
    ranked = MishonRecommender(loaded.network, loaded.inputs).fit(data).recommend(cases, 10)
    found: Counter[int] = Counter()
    total: Counter[int] = Counter()
    for top, tags in zip(ranked, data.posts["hashtags"].to_numpy()[cases], strict=True):
        for tag in set(tags):
            bucket = next(
                i
                for i, (lo, hi) in enumerate(BUCKETS)
                if counts[tag] >= lo and (hi is None or counts[tag] <= hi)
            )
            total[bucket] += 1
            found[bucket] += tag in top
    rows = [
        {
            "training uses": f"{lo}" if lo == hi else (f"{lo}+" if hi is None else f"{lo}-{hi}"),
            "true hashtags": total[i],
            "recall@10": found[i] / total[i] if total[i] else 0.0,
        }
        for i, (lo, hi) in enumerate(BUCKETS)
    ]
    plt = _plt()
    fig, axis = plt.subplots(figsize=(7, 3.4))
    axis.bar([r["training uses"] for r in rows], [r["recall@10"] for r in rows])
    axis.set_xlabel("times the hashtag was used in training")
    axis.set_ylabel("MISHON recall@10")
    fig.tight_layout()
    return _save(fig, run / "report-frequency.png"), rows


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(run: Path, dataset: Path | None = None) -> Path:
    """Write RUN/report.html (and its PNGs); needs RUN/evaluation-test.json."""
    loaded = load_run(run, dataset)
    evaluation = load_evaluation(run, loaded, "test").model_dump(mode="json")
    info = loaded.info
    sections = [
        f"<h1>MISHON run {html.escape(run.name)}</h1>",
        f"<p>dataset {html.escape(info.dataset)}, split {html.escape(info.split)}, "
        f"modalities {', '.join(info.modalities)}, vocabulary {info.vocabulary_size:,} "
        "hashtags</p>",
    ]
    curves = training_curves(run)
    if curves:
        sections.append(f"<h2>Training</h2><img src='{curves}' alt='training curves'>")
    results = evaluation["results"]
    rows = [
        [r["recommender"], *(f"{r['all'][f'F1@{k}']:.4f}" for k in KS), f"{r['all']['NDCG@5']:.4f}"]
        for r in results
    ]
    first = results[0]["cases"]
    sections += [
        "<h2>Test metrics</h2>",
        f"<p>{first['all']:,} test posts ({first['warm']:,} warm, {first['cold']:,} cold-start)."
        "</p>",
        _table(["recommender", *(f"F1@{k}" for k in KS), "NDCG@5"], rows),
        f"<img src='{metrics_at_k(run, evaluation)}' alt='metrics at K'>",
    ]
    cold = warm_and_cold(run, evaluation)
    if cold:
        sections.append(f"<h2>Warm and cold-start users</h2><img src='{cold}' alt='cold'>")
    frequency, buckets = recall_by_frequency(run, loaded)
    sections += [
        "<h2>Recall by hashtag frequency</h2>",
        _table(
            ["training uses", "true hashtags", "recall@10"],
            [[b["training uses"], b["true hashtags"], f"{b['recall@10']:.3f}"] for b in buckets],
        ),
        f"<img src='{frequency}' alt='recall by frequency'>",
    ]
    summary = loaded.graph.meta.get("summary", {})
    edge_rows = [
        [name, f"{e['edges']:,}", f"{e['in_degree']['mean']:.2f}", e["in_degree"]["max"]]
        for name, e in summary.get("edges", {}).items()
    ]
    node_rows = [
        [t, f"{n['nodes']:,}", f"{n['isolated']:,}"] for t, n in summary.get("nodes", {}).items()
    ]
    cold_start = loaded.graph.meta.get("cold_start", {})
    sections += [
        "<h2>Graph</h2>",
        _table(["node type", "nodes", "isolated"], node_rows),
        _table(["edge type", "edges", "mean in-degree", "max in-degree"], edge_rows),
        f"<p>cold-start users {cold_start.get('cold_users', 0):,}, linked to popular users by "
        f"{cold_start.get('links', 0):,} edges.</p>",
    ]
    style = (
        "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
        "table{border-collapse:collapse;margin:.5rem 0}td,th{padding:.25rem .6rem;"
        "border-bottom:1px solid #ddd;text-align:right}td:first-child,th:first-child"
        "{text-align:left}img{max-width:100%}"
    )
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>MISHON report: {html.escape(run.name)}</title><style>{style}</style></head>"
        f"<body>{''.join(sections)}</body></html>"
    )
    with atomic_path(run / "report.html") as tmp:
        tmp.write_text(page, "utf-8")
    return run / "report.html"
