"""What a recommender told the hidden truth could reach on a synthetic corpus, and where runs miss.

The generator (`mishon.data.synth.world`) draws each post's hashtags independently given its
true topic, its user and its day: the topic's tags (1 + Binomial(2, 0.4) of six, Zipf-weighted,
without replacement), each trend tag with 0.7 exp(-z^2 / 2) around its peak, the user's
signature (0.35), group tag (0.4), influencer tags (0.8 for the influencer; 0.2, or 0.5 for late
joiners, for followers) and each generic tag (0.08). Ranking every candidate by its inclusion
probability maximises the expected hits at every K. Three such rankings, scored with the
evaluator's own metric code on the split's valid and test posts:

- "true topic": told the post's topic, which no model sees;
- "shown content": told only the topic each modality follows (visual, acoustic, textual; absent
  where the post has no sound or caption) and the topics of the user's training posts: the
  topic is a posterior, the user's topic frequencies (plus one half) times, per shown modality,
  fidelity if it shows that topic, else (1 - fidelity) / (T - 1). The best a model could do
  whose encoders recognised every modality's topic perfectly;
- "user only": the user's topic frequencies alone.

Then recall@5 by kind of hashtag (topic, trend, signature, group, influencer, generic) for the
"shown content" ranking, the user-history baseline and each run given with --run: which part
of the generative story a model has not learned.

Usage: python benchmarks/synthetic_ceiling.py DATASET [--split temporal] [--run RUN ...]
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mishon.config import SynthSettings
from mishon.data.split_data import SplitData, load_split_data
from mishon.data.synth.themes import GENERIC_TAGS
from mishon.data.synth.world import TOPIC_TAG_PATTERNS, World, build_world
from mishon.metrics import ranking_metrics
from mishon.recommenders import MishonRecommender, fit_baseline

KS = (1, 3, 5, 10)
CEILINGS = ("true topic", "shown content", "user only")


def topic_tag_inclusion(draws: int, seed: int = 0) -> np.ndarray:
    """Probability that each of the six topic tag patterns is picked (simulated as drawn)."""
    rng = np.random.default_rng(seed)
    zipf = 1.0 / np.arange(1, len(TOPIC_TAG_PATTERNS) + 1)
    zipf /= zipf.sum()
    counts = np.zeros(len(TOPIC_TAG_PATTERNS))
    for _ in range(draws):
        size = 1 + rng.binomial(2, 0.4)
        counts[rng.choice(len(TOPIC_TAG_PATTERNS), size=size, replace=False, p=zipf)] += 1
    return counts / draws


def hashtag_kinds(truth: dict[str, Any]) -> dict[str, str]:
    """The part of the generative story each hashtag comes from."""
    kinds = {tag: "generic" for tag in GENERIC_TAGS}
    for topic in truth["topics"]:
        kinds.update({tag: "topic" for tag in topic["hashtags"]})
        kinds.update({tag: "trend" for tag in topic["trends"]})
    kinds.update({u["signature"]: "signature" for u in truth["users"]})
    kinds.update({g["hashtag"]: "group" for g in truth["groups"]})
    kinds.update({tag: "influencer" for tag in truth["influencers"].values()})
    return kinds


def recall_by_kind(
    ranked: list[list[str]], wanted: list[set[str]], kinds: dict[str, str], k: int = 5
) -> dict[str, str]:
    hits, totals = Counter(), Counter()
    for top, tags in zip(ranked, wanted, strict=True):
        for tag in tags:
            totals[kinds.get(tag, "other")] += 1
            hits[kinds.get(tag, "other")] += tag in top[:k]
    return {kind: f"{hits[kind]}/{totals[kind]}" for kind in sorted(totals)}


class Oracle:
    """Inclusion-probability rankings from the generator's truth."""

    def __init__(self, world: World, data: SplitData, fidelity: dict[str, float], draws: int):
        self.truth = world.truth
        self.posts = world.truth_posts.set_index("post_id")
        self.users = {u["user_id"]: u for u in self.truth["users"]}
        self.groups = {g["group"]: g["hashtag"] for g in self.truth["groups"]}
        self.inclusion = topic_tag_inclusion(draws)
        self.n_topics = len(self.truth["topics"])
        self.fidelity = fidelity
        self.start = world.posts["created_at"].min().normalize()
        self.topic_counts: dict[str, np.ndarray] = {}
        training = data.posts.loc[data.is_train, ["post_id", "user_id"]]
        for post_id, user_id in training.itertuples(index=False):
            counts = self.topic_counts.setdefault(user_id, np.zeros(self.n_topics))
            counts[int(self.posts.loc[post_id, "topic"])] += 1

    def topic_belief(self, post: pd.Series, ceiling: str) -> np.ndarray:
        row = self.posts.loc[post["post_id"]]
        if ceiling == "true topic":
            return np.eye(self.n_topics)[int(row["topic"])]
        belief = self.topic_counts.get(post["user_id"], np.zeros(self.n_topics)) + 0.5
        if ceiling == "shown content":
            shown = {
                "visual": True,
                "acoustic": bool(row["has_sound"]),
                "textual": isinstance(post["caption"], str),
            }
            for modality, fid in self.fidelity.items():
                if shown[modality]:
                    likelihood = np.full(self.n_topics, (1 - fid) / (self.n_topics - 1))
                    likelihood[int(row[f"{modality}_topic"])] = fid
                    belief = belief * likelihood
        return belief / belief.sum()

    def ranking(self, post: pd.Series, ceiling: str, k: int) -> list[str]:
        belief = self.topic_belief(post, ceiling)
        day = (post["created_at"] - self.start).total_seconds() / 86400
        p: dict[str, float] = {}
        for weight, topic in zip(belief, self.truth["topics"], strict=True):
            for tag, q in zip(topic["hashtags"], self.inclusion, strict=True):
                p[tag] = p.get(tag, 0.0) + weight * q
            trends = zip(
                topic["trends"], topic["trend_peak_day"], topic["trend_width_days"], strict=True
            )
            for tag, peak, width in trends:
                p[tag] = p.get(tag, 0.0) + weight * 0.7 * math.exp(
                    -0.5 * ((day - peak) / width) ** 2
                )
        user = self.users[post["user_id"]]
        p[user["signature"]] = 0.35
        p[self.groups[user["group"]]] = 0.4
        influencers = self.truth["influencers"]
        if user["popular"]:
            p[influencers[user["user_id"]]] = 0.8
        elif user["follows"] in influencers:
            p[influencers[user["follows"]]] = 0.5 if user["late"] else 0.2
        for tag in GENERIC_TAGS:
            p[tag] = max(p.get(tag, 0.0), 0.08)
        return sorted(p, key=lambda t: -p[t])[:k]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--split", default="temporal")
    parser.add_argument("--draws", type=int, default=200_000)
    parser.add_argument("--run", type=Path, action="append", default=[], help="run directories")
    args = parser.parse_args()
    meta = json.loads((args.dataset / "dataset.json").read_text("utf-8"))
    world = build_world(SynthSettings.model_validate(meta["synth"]))
    data = load_split_data(args.dataset, args.split)
    regenerated = world.posts.set_index("post_id")["hashtags"]
    for post_id, tags in zip(data.posts["post_id"], data.posts["hashtags"], strict=True):
        if list(tags) != regenerated[post_id]:
            raise SystemExit(f"{args.dataset}: post {post_id} differs from its regenerated truth")
    fidelity = {m: meta["synth"][f"{m}_fidelity"] for m in ("visual", "acoustic", "textual")}
    oracle = Oracle(world, data, fidelity, args.draws)
    result: dict[str, Any] = {"dataset": str(args.dataset), "split": args.split, "F1": {}}
    for ceiling in CEILINGS:
        for part in ("valid", "test"):
            cases = data.cases(part)
            ranked = [oracle.ranking(data.posts.iloc[i], ceiling, max(KS)) for i in cases]
            wanted = [set(t) for t in data.posts["hashtags"].to_numpy()[cases]]
            metrics = ranking_metrics(ranked, wanted, KS)
            result["F1"].setdefault(ceiling, {})[part] = {
                f"F1@{k}": round(metrics[f"F1@{k}"], 4) for k in KS
            }
    cases = data.cases("test")
    wanted = [set(t) for t in data.posts["hashtags"].to_numpy()[cases]]
    kinds = hashtag_kinds(world.truth)
    rankings = {
        "shown content ceiling": [
            oracle.ranking(data.posts.iloc[i], "shown content", 5) for i in cases
        ],
        "user history": fit_baseline("history", data).recommend(cases, 5),
    }
    if args.run:
        from mishon.train.run import load_run

        for run_dir in args.run:
            run = load_run(run_dir, args.dataset)
            rankings[str(run_dir)] = (
                MishonRecommender(run.network, run.inputs).fit(run.data).recommend(cases, 5)
            )
    result["test recall@5 by kind"] = {
        name: recall_by_kind(ranked, wanted, kinds) for name, ranked in rankings.items()
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
