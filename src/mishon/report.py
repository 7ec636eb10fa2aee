"""`mishon report RUN`: one self-contained HTML page about a trained run, its plots inlined.

Sections: training curves (history.csv), metrics @K against the baselines with the 95%
intervals of F1@5 and MISHON's ratio to the best baseline with its paired interval, warm vs
cold-start users (the run's saved evaluation under a protocol, made by `mishon evaluate
--baselines`), recall by how often a hashtag appeared in training (computed here on the test
posts), and the graph summary (graph.json). The page is rendered from
`templates/report.html.j2` (Jinja2, autoescaped) and names no path outside the run.
"""

from __future__ import annotations

import base64
import csv
import io
from collections import Counter
from pathlib import Path
from typing import Any

from mishon import __version__
from mishon.data.store import atomic_path
from mishon.evaluate.compare import ratio_rows
from mishon.evaluate.evaluation import load_evaluation
from mishon.evaluate.uncertainty import interval_text, reading
from mishon.extras import require
from mishon.recommenders import MishonRecommender
from mishon.train.run import load_run

BUCKETS = ((0, 0), (1, 1), (2, 5), (6, 20), (21, 100), (101, None))
KS = (1, 3, 5, 10)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _inline(fig: Any) -> str:
    """The figure as a PNG data URI, so the page needs no file beside it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


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
    return _inline(fig)


def metrics_at_k(evaluation: dict[str, Any]) -> str:
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
    # beside the plots, never over a line
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.suptitle("test posts: MISHON against the baselines")
    fig.tight_layout()
    return _inline(fig)


def warm_and_cold(evaluation: dict[str, Any]) -> str | None:
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
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.tight_layout()
    return _inline(fig)


def recall_by_frequency(loaded: Any) -> tuple[str, list[dict[str, Any]]]:
    """Recall@10 of the true test hashtags, grouped by their number of training uses (None
    for a group without any)."""
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
            "recall@10": found[i] / total[i] if total[i] else None,
        }
        for i, (lo, hi) in enumerate(BUCKETS)
    ]
    plt = _plt()
    fig, axis = plt.subplots(figsize=(7, 3.4))
    labels = [r["training uses"] for r in rows]
    axis.bar(labels, [r["recall@10"] or 0.0 for r in rows])
    for x, row in enumerate(rows):
        if row["recall@10"] is None:  # an empty group: said, not drawn as a recall of 0
            axis.annotate("none", (x, 0), ha="center", va="bottom", color="#777", fontsize=8)
    axis.set_xlabel("times the hashtag was used in training")
    axis.set_ylabel("MISHON recall@10")
    axis.set_ylim(0, 1)
    fig.tight_layout()
    return _inline(fig), rows


PROTOCOL_NOTES = {
    "static": "each recommender knows the training posts only",
    "known-past": "each recommender knows the training and validation posts",
    "stream": "each test post is ranked knowing every post before it",
}


def _ratio_rows(evaluation: dict[str, Any]) -> list[dict[str, str]]:
    rows = []
    for row in ratio_rows(evaluation):
        verdict = reading(row.interval)
        rows.append(
            {
                "name": row.name,
                "subset": row.subset,
                "best": row.best or "-",
                "value": f"{row.ratio:.3f}",
                "interval": interval_text(row.interval),
                "verdict": verdict,
                "verdict_class": verdict if verdict in ("better", "worse") else "",
            }
        )
    return rows


def write_report(run: Path, dataset: Path | None = None, protocol: str = "static") -> Path:
    """Write RUN/report.html, one self-contained page (its plots inlined), from the run's
    saved evaluation of the test posts under `protocol` (`mishon evaluate --baselines`)."""
    import jinja2

    require("matplotlib", "report", "mishon report")
    loaded = load_run(run, dataset)
    evaluation = load_evaluation(run, loaded, "test", protocol).model_dump(mode="json")
    info = loaded.info
    results = evaluation["results"]
    frequency, buckets = recall_by_frequency(loaded)
    summary = loaded.graph.meta.get("summary", {})
    cold_start = loaded.graph.meta.get("cold_start", {})
    dataset_name = Path(info.dataset).name
    context = {
        "title": f"run {run.resolve().name} on {dataset_name}",
        "dataset": dataset_name,
        "split": info.split,
        "modalities": ", ".join(info.modalities),
        "vocabulary": info.vocabulary_size,
        "protocol": evaluation["protocol"],
        "protocol_note": PROTOCOL_NOTES.get(evaluation["protocol"], ""),
        "curves": training_curves(run),
        "cases": results[0]["cases"],
        "ks": KS,
        "rows": [
            {
                "name": r["recommender"],
                "f1": [f"{r['all'][f'F1@{k}']:.4f}" for k in KS],
                "interval": interval_text(r.get("F1@5 95%", {}).get("all")),
                "ndcg": f"{r['all']['NDCG@5']:.4f}",
            }
            for r in results
        ],
        "ratios": _ratio_rows(evaluation),
        "metrics": metrics_at_k(evaluation),
        "cold": warm_and_cold(evaluation),
        "buckets": [
            {
                "uses": b["training uses"],
                "count": b["true hashtags"],
                "recall": "no test hashtag" if b["recall@10"] is None else f"{b['recall@10']:.3f}",
            }
            for b in buckets
        ],
        "frequency": frequency,
        "nodes": [
            [t, f"{n['nodes']:,}", f"{n['isolated']:,}"]
            for t, n in summary.get("nodes", {}).items()
        ],
        "edges": [
            [name, f"{e['edges']:,}", f"{e['in_degree']['mean']:.2f}", e["in_degree"]["max"]]
            for name, e in summary.get("edges", {}).items()
        ],
        "cold_users": cold_start.get("cold_users", 0),
        "cold_links": cold_start.get("links", 0),
        "version": __version__,
    }
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("mishon", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    page = environment.get_template("report.html.j2").render(**context)
    with atomic_path(run / "report.html") as tmp:
        tmp.write_text(page, "utf-8")
    return run / "report.html"
