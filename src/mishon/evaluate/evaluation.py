"""Evaluating a trained run, from Python or `mishon evaluate`: the Evaluation artifact.

`evaluate_run` loads a run, ranks the test (or valid) posts with it and with any baselines
fitted on the same split, and writes `RUN/evaluation-PART.json`. That file records the lineage
it was computed from (the run's fingerprint: its inputs and its best weights); `load_evaluation`
refuses one whose run changed since, so a report never mixes a new model with old figures.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from mishon.config import DEFAULT_REFRESH
from mishon.data.split_data import SplitData
from mishon.data.store import write_json
from mishon.errors import MishonError
from mishon.evaluate.compare import best_other, relative_interval, relative_to_best
from mishon.evaluate.live import select_live_weights
from mishon.evaluate.protocols import Progress, check_protocol
from mishon.evaluate.run import evaluate, subset_masks, true_counts
from mishon.lineage import Lineage
from mishon.recommenders import (
    BASELINE_NAMES,
    NEEDS_FEATURES,
    MishonRecommender,
    baseline,
)
from mishon.recommenders.evidence import EVIDENCE, EvidenceSettings
from mishon.recommenders.hashtag_names import HashtagNames
from mishon.recommenders.hashtag_side import HashtagSideSettings, hashtag_encoder_path
from mishon.recommenders.live import LiveMishon, LiveWeights, PlacementName, check_evidence
from mishon.recommenders.second_stage import LearnedRanker
from mishon.train.run import StageFn, TrainedRun, load_run
from mishon.train.tracking import open_tracker

log = logging.getLogger("mishon.evaluate")

PARTS = ("test", "valid")


class Evaluation(BaseModel):
    """A run's figures on one part of its split, beside the baselines', with their lineage."""

    model_config = ConfigDict(extra="forbid")

    run: str
    part: str
    split: str
    protocol: str = "static"
    lineage: Lineage
    results: list[dict[str, Any]]
    skipped: dict[str, str] = {}
    # per MISHON recommender and subset: its F1@5 over the best baseline's, the paired
    # bootstrap 95% interval of that ratio, and which baseline was the best
    relative_f1_at_5: dict[str, dict[str, float | None]] | None = None
    relative_f1_at_5_95: dict[str, dict[str, list[float] | None]] | None = None
    best_baseline: dict[str, str] | None = None

    def save(self, path: Path) -> Path:
        write_json(self.model_dump(mode="json", exclude_none=True), path)
        return path


def evaluation_path(
    run: Path,
    part: str,
    protocol: str = "static",
    evidence: tuple[str, ...] = EVIDENCE,
    hashtag_names: bool = False,
    placement: str = "graph",
    live: bool = True,
) -> Path:
    """RUN/evaluation-PART.json (static protocol) or evaluation-PART-PROTOCOL.json; an
    evaluation of MISHON live with part of its evidence adds -live-E1+E2..., with hashtag names
    -names, with its posts placed as new posts -new; one without MISHON live -nolive (so it
    never replaces the evaluation the service reads its weights from)."""
    suffix = "" if protocol == "static" else f"-{protocol}"
    if not live:
        suffix += "-nolive"
    if tuple(evidence) != EVIDENCE:
        suffix += "-live-" + "+".join(evidence)
    if hashtag_names:
        suffix += "-names"
    if placement == "new":
        suffix += "-new"
    return run / f"evaluation-{part}{suffix}.json"


def ranker_path(evaluation: Path) -> Path:
    """Where the learned second stage chosen by an evaluation is kept: beside its file, as
    evaluation-PART[...].ranker.txt (LightGBM's text format)."""
    return evaluation.with_suffix(".ranker.txt")


def evaluation_lineage(loaded: TrainedRun) -> Lineage:
    """What an evaluation of `loaded` depends on: its posts, its split and the run itself."""
    data = loaded.data
    return Lineage(posts=data.posts_fingerprint, split=data.fingerprint, run=loaded.fingerprint)


def check_part(part: str) -> str:
    if part not in PARTS:
        raise MishonError(f"the evaluated part must be test or valid, not {part!r}")
    return part


def baseline_names(only: str | Sequence[str] | None) -> list[str]:
    """Baseline names from 'all', a comma-separated string or a list; unknown ones refused."""
    if only is None:
        return []
    if isinstance(only, str):
        only = list(BASELINE_NAMES) if only == "all" else only.split(",")
    names = [n.strip() for n in only if n.strip()]
    unknown = [n for n in names if n not in BASELINE_NAMES]
    if unknown:
        raise MishonError(f"unknown baseline(s) {unknown}; choose from {list(BASELINE_NAMES)}")
    return names


def unavailable_baselines(names: Sequence[str], data: SplitData) -> dict[str, str]:
    """The baselines of `names` that cannot run on `data`, with the reason."""
    has_features = (data.dataset / "features").is_dir()
    has_sound = "sound" in data.posts and bool(data.posts["sound"].notna().any())
    skipped = {
        name: f"no features: run `mishon extract {data.dataset}`"
        for name in names
        if name in NEEDS_FEATURES and not has_features
    }
    if "sound" in names and not has_sound:
        skipped["sound"] = "no post names its sound"
    return skipped


def evaluate_baselines(
    names: Sequence[str],
    data: SplitData,
    part: str,
    settings: Any = None,
    stage: StageFn | None = None,
    protocol: str = "static",
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Fit and evaluate the named baselines under `protocol`; those that cannot run are
    returned with why."""
    report = stage or (lambda _name: None)
    skipped = unavailable_baselines(names, data)
    results = []
    for name in names:
        if name in skipped:
            continue
        report(f"{name}: fitting and ranking")
        fitted = baseline(name, settings).fit(data)
        results.append(
            evaluate(
                fitted, data, check_part(part), protocol=protocol,
                progress=ranking_progress(report, name),
            )
        )  # fmt: skip
    return results, skipped


def evaluate_run(
    run: Path,
    part: str = "test",
    baselines: str | Sequence[str] | None = None,
    dataset: Path | None = None,
    device: str = "auto",
    stage: StageFn | None = None,
    loaded: TrainedRun | None = None,
    protocol: str = "static",
    refresh_every: int = DEFAULT_REFRESH,
    live: bool = True,
    evidence: tuple[str, ...] = EVIDENCE,
    hashtag_names: bool = False,
    evidence_settings: EvidenceSettings | None = None,
    placement: PlacementName = "graph",
) -> Evaluation:
    """Evaluate the run in `run` (and `baselines`) on `part` under `protocol`; writes
    `evaluation_path(run, part, protocol)`. Under `stream`, MISHON encodes the graph again
    after every `refresh_every` revealed posts (1: after each, exact; more: faster, each post
    still sees only posts before it). With `live`, MISHON live (`recommenders/live.py`) is
    evaluated too, its weights selected on the validation posts under the same protocol, from
    the `evidence` named (all by default); `hashtag_names` adds the hashtags' names to the
    inductive hashtag side (`recommenders/hashtag_side.py`); `evidence_settings` how MISHON
    live reads the known posts (exact scan or index); `placement` new ranks MISHON live's posts
    as new posts placed by the inductive path among the training posts, as the service places
    a post (written as evaluation-PART[-PROTOCOL]-new.json); without `live`, written as
    evaluation-PART[-PROTOCOL]-nolive.json."""
    report = stage or (lambda _name: None)
    check_part(part)
    check_protocol(protocol)
    check_evidence(evidence)
    side = HashtagSideSettings(names=hashtag_names)
    names = baseline_names(baselines)
    if loaded is None:
        report("loading the run")
        loaded = load_run(run, dataset, device)
    data = loaded.data
    path = evaluation_path(run, part, protocol, evidence, hashtag_names, placement, live)
    report("MISHON: ranking")
    mishon = MishonRecommender(loaded.network, loaded.inputs, refresh_every=refresh_every)
    ranked = evaluate(
        mishon.fit(data), data, part, protocol=protocol, progress=ranking_progress(report, "MISHON")
    )
    results = [ranked]
    if live:
        results.append(
            evaluate_live(
                loaded,
                part,
                protocol,
                refresh_every,
                report,
                evidence,
                side,
                evidence_settings,
                placement,
                ranker_path(path),
            )
        )
    others, skipped = evaluate_baselines(names, data, part, loaded.settings, report, protocol)
    results += others
    evaluation = Evaluation(
        run=str(run),
        part=part,
        split=data.split_name,
        protocol=protocol,
        lineage=evaluation_lineage(loaded),
        results=results,
        skipped=skipped,
    )
    if others:
        compare_with_baselines(evaluation, data, len(results) - len(others))
    evaluation.save(path)
    log.info(
        "evaluated %s on %d %s posts (%s): %s; written to %s",
        run, results[0]["cases"]["all"], part, protocol,
        ", ".join(f"{r['recommender']} F1@5 {r['all']['F1@5']:.4f}" for r in results), path,
    )  # fmt: skip
    track_evaluation(loaded, evaluation, path)
    return evaluation


def track_evaluation(loaded: TrainedRun, evaluation: Evaluation, path: Path) -> None:
    """Log a saved evaluation to the run's tracker (`train.tracking`), if it has one."""
    train = loaded.settings.train
    if train.tracking == "none":
        return
    tracker = open_tracker(
        train.tracking,
        loaded.path,
        loaded.settings.model_dump(mode="json"),
        loaded.fingerprint,
        train.tracking_uri,
        resume=True,
    )
    try:
        tracker.evaluation(evaluation.model_dump(mode="json", exclude_none=True), path)
    finally:
        tracker.close()


def ranking_progress(report: StageFn, name: str, every_s: float = 2.0) -> Progress:
    """A stream's progress for `report`: posts ranked, and the time left at the rate so far
    (told at most every `every_s` seconds)."""
    started = time.monotonic()
    last = [started]

    def told(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < every_s and done < total:
            return
        last[0] = now
        left = (now - started) / done * (total - done)
        about = f"{left:.0f} s" if left < 90 else f"{left / 60:.0f} min"
        report(f"{name}: ranking {done:,}/{total:,} posts, about {about} left")

    return told


def compare_with_baselines(evaluation: Evaluation, data: SplitData, ours: int) -> None:
    """Fill in the ratios of the first `ours` results (MISHON's) to the best baseline's F1@5,
    per subset, with their paired bootstrap intervals (`compare.relative_interval`)."""
    results = evaluation.results
    mine = [r["recommender"] for r in results[:ours]]
    subsets = [s for s in ("all", "warm", "cold") if results[0]["cases"][s]]
    masks = subset_masks(data, evaluation.part)
    sizes = true_counts(data, evaluation.part)
    evaluation.relative_f1_at_5 = {
        name: {s: relative_to_best(results, name, subset=s, exclude=mine) for s in subsets}
        for name in mine
    }
    evaluation.relative_f1_at_5_95 = {
        name: {
            s: relative_interval(results, name, masks[s], sizes, subset=s, exclude=mine)
            for s in subsets
        }
        for name in mine
    }
    evaluation.best_baseline = {}
    for s in subsets:
        best = best_other(results, mine[0], subset=s, exclude=mine)
        if best is not None:
            evaluation.best_baseline[s] = best["recommender"]


def evaluate_live(
    loaded: TrainedRun,
    part: str,
    protocol: str,
    refresh_every: int,
    report: StageFn,
    evidence: tuple[str, ...] = EVIDENCE,
    side: HashtagSideSettings | None = None,
    settings: EvidenceSettings | None = None,
    placement: PlacementName = "graph",
    ranker_path: Path | None = None,
) -> dict[str, Any]:
    """MISHON live's result on `part`, with the weights selected on the validation posts and
    the second stage chosen there (the one ranker, `LiveMishon.from_run`; `placement` new ranks
    the posts as new posts). A learned ranker chosen is saved to `ranker_path` (its SHA-256 in
    the result's `second_stage`)."""
    settings = settings or EvidenceSettings()
    side = side or HashtagSideSettings()
    names = None
    if side.names and "model_outside" in evidence:
        report("MISHON live: loading the textual extractor for hashtag names")
        names = HashtagNames.for_split(loaded.data)
    if "model_outside" in evidence:
        path = hashtag_encoder_path(loaded, side)
        report(f"MISHON live: {'loading' if path.is_file() else 'fitting'} the hashtag side")
    live = LiveMishon.from_run(
        loaded,
        evidence=evidence,
        refresh_every=refresh_every,
        settings=settings,
        side=side,
        names=names,
        placement=placement,
    )
    report("MISHON live: selecting its weights and second stage on the validation posts")
    selection = select_live_weights(
        live, loaded.data, protocol, second_stage=settings.second_stage,
        progress=ranking_progress(report, "MISHON live, validation stream"),
    )  # fmt: skip
    valid_f1 = selection.reached
    report(f"MISHON live: ranking ({selection.second_stage.get('chosen', 'search')} ranker)")
    result = evaluate(
        live, loaded.data, part, protocol=protocol,
        progress=ranking_progress(report, "MISHON live"),
    )  # fmt: skip
    result["weights"] = asdict(live.weights)
    result["weights_valid_f1_at_5"] = valid_f1
    result["second_stage"] = selection.second_stage
    if live.ranker is not None and ranker_path is not None:
        result["second_stage"] |= {
            "file": ranker_path.name,
            "sha256": live.ranker.save(ranker_path),
        }
    if evidence != EVIDENCE:
        result["evidence"] = list(evidence)
    result["placement"] = placement
    result["known_posts_search"] = "index" if live.known_.approximate else "exact"
    result["evidence_settings"] = settings.model_dump(mode="json")
    if side.names:
        result["hashtag_names"] = True
    if not valid_f1:
        result["note"] = "no validation posts to select the weights on: the defaults"
    elif part == "valid":
        result["note"] = "weights selected on these same validation posts"
    return result


def load_evaluation(
    run: Path, loaded: TrainedRun, part: str = "test", protocol: str = "static"
) -> Evaluation:
    """The run's saved evaluation of `part` under `protocol`, refused when the run changed
    since it was made."""
    path = evaluation_path(run, check_part(part), check_protocol(protocol))
    again = f"mishon evaluate {run} --part {part} --protocol {protocol} --baselines all"
    if not path.is_file():
        raise MishonError(f"no {protocol} evaluation in {run}: run `{again}`")
    try:
        evaluation = Evaluation.model_validate(json.loads(path.read_text("utf-8")))
    except (ValueError, TypeError) as exc:
        raise MishonError(
            f"{path} is not an evaluation of this MISHON version ({exc.__class__.__name__}): "
            f"rerun `{again}`"
        ) from None
    now = evaluation_lineage(loaded)
    changed = evaluation.lineage.changes(now, ignore=("code",))
    if changed:
        raise MishonError(
            f"{path} was computed before {', '.join(changed)} changed: rerun `{again}`"
        )
    return evaluation


@dataclass
class SelectedRanking:
    """How the service ranks a run's new posts: the weights and the learned ranker (None:
    the defaults, the weights) of the run's stream evaluation, and where they come from."""

    weights: LiveWeights | None
    ranker: LearnedRanker | None
    source: str


def selected_ranking(run: Path, loaded: TrainedRun) -> SelectedRanking:
    """MISHON live's weights and second stage from the run's current stream evaluation (the
    defaults where there is none); a new post is ranked as the stream protocol ranks test
    posts. A learned ranker is read from beside the evaluation and refused unless it is the one
    the evaluation chose (its SHA-256)."""
    try:
        evaluation = load_evaluation(run, loaded, "test", "stream")
    except MishonError:
        return SelectedRanking(None, None, "defaults (no current stream evaluation of the run)")
    path = evaluation_path(run, "test", "stream")
    again = f"mishon evaluate {run} --protocol stream"
    for result in evaluation.results:
        if result["recommender"] == "MISHON live" and "weights" in result:
            stored = result["weights"]
            if isinstance(stored, dict) and stored and set(stored) <= set(EVIDENCE):
                return SelectedRanking(
                    None, None, "defaults (the stream evaluation is of an older format: rerun it)"
                )
            weights = LiveWeights.read(stored, f"{path} (rerun `{again}`)")
            stage = result.get("second_stage", {})
            if stage.get("chosen") != "learned":
                return SelectedRanking(
                    weights, None, "weights selected on the validation posts (stream protocol)"
                )
            ranker = LearnedRanker.load(ranker_path(path), str(stage.get("sha256")), again)
            return SelectedRanking(
                weights,
                ranker,
                "learned ranker chosen on the validation posts (stream protocol)",
            )
    return SelectedRanking(None, None, "defaults (the stream evaluation has no MISHON live)")
