"""New posts ranked as MISHON live ranks them: the inductive path, then the known posts' evidence.

The inductive path (`inductive.py`) gives the model's probabilities and the new post's place
in the model's space; `gather_evidence` then scores every hashtag of the known posts (every
labelled post of the dataset, and each post `add`ed since, such as those recorded by the
service) with the weights given (MISHON live's, selected on validation posts, or
DEFAULT_WEIGHTS). A hashtag added a moment ago for one user is recommendable to similar posts
of any user; nothing is retrained.
"""

from __future__ import annotations

import numpy as np
import torch

from mishon.recommend.inductive import InductiveRecommender, NewPost, Recommendation
from mishon.recommenders.evidence import (
    EVIDENCE,
    EvidenceSettings,
    KnownPosts,
    Query,
    gather_evidence,
)
from mishon.recommenders.hashtag_side import (
    HashtagSide,
    HashtagSideSettings,
    NameEmbedder,
    run_hashtag_encoder,
)
from mishon.recommenders.live import LiveWeights
from mishon.train.run import TrainedRun

MODEL_CANDIDATES = 50  # model hashtags considered beyond k


class LiveRecommender:
    """Top-k hashtags for new posts, with evidence and reasons, from a run and the known posts."""

    def __init__(
        self,
        run: TrainedRun,
        weights: LiveWeights | dict[str, float] | None = None,
        settings: EvidenceSettings | None = None,
        pooled: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None,
        side: HashtagSideSettings | None = None,
        names: NameEmbedder | None = None,
    ) -> None:
        self.inductive = InductiveRecommender(run, pooled)
        self.weights = LiveWeights.of(weights)
        self.settings = settings or EvidenceSettings()
        modalities = self.inductive.network.modalities
        self.known = KnownPosts(
            self.inductive.graph_fused(), [self.inductive.pooled[m] for m in modalities]
        )
        self.side = self._hashtag_side(run, side or HashtagSideSettings(), names)
        posts = run.data.posts
        users = posts["user_id"].astype(str).tolist()
        for row, tags in enumerate(posts["hashtags"]):
            if len(tags):
                self._reveal(row, users[row], list(tags))

    def _hashtag_side(
        self, run: TrainedRun, settings: HashtagSideSettings, names: NameEmbedder | None
    ) -> HashtagSide | None:
        """The inductive hashtag side over the known posts (the run's encoder, fitted on its
        training posts at the first start and kept in the run directory)."""
        weights = (self.weights.known_user, self.weights.new_user)
        if not any(w.get("model_outside") for w in weights):
            return None  # worth nothing under these weights: not fitted
        names = names if settings.names else None
        encoder, _ = run_hashtag_encoder(run, settings, names)
        return HashtagSide(run.network, run.inputs.vocabulary.tags, encoder, self.known, names)

    def _reveal(self, row: int, user: str, hashtags: list[str]) -> None:
        self.known.reveal(row, user, hashtags)
        if self.side is not None:
            self.side.reveal(row, hashtags)

    def add(self, post: NewPost, hashtags: list[str]) -> None:
        """A post of `post.user_id` with its chosen hashtags joins the known posts, placed by its
        content (a post without any counts for its user's history and popularity only)."""
        fused, content = None, []
        if post.units:
            placed = self.inductive.recommend(post, 1)
            fused, content = placed.fused, placed.content
        row = self.known.add(fused, content, post.user_id or "", hashtags)
        if self.side is not None:
            self.side.reveal(row, hashtags)

    def recommend(self, post: NewPost, k: int = 10, explain: int = 5) -> Recommendation:
        """Top-`k` hashtags by weighted evidence, each with its evidence values and reasons."""
        result = self.inductive.recommend(post, k + MODEL_CANDIDATES, explain)
        if result.user_known:  # the graph's links of a graph user; a new user's popular links
            index = self.inductive.user_index[post.user_id]
            linked = [self.inductive.user_ids[v] for v in self.inductive.existing_links(index)]
        else:
            linked = [n.id for n in result.neighbours if n.kind == "user"]
        outside: dict[str, float] = {}
        if self.side is not None and result.fused is not None:
            fused = torch.from_numpy(np.asarray(result.fused, np.float32))[None]
            outside = self.side.outside_probabilities(fused, k + MODEL_CANDIDATES)[0]
        query = Query(
            result.fused, result.content, post.user_id, dict(result.hashtags), linked, outside
        )
        table = gather_evidence(self.known, [query], self.settings)[0]
        has_posts = bool(post.user_id and self.known.by_user.get(post.user_id))
        top = table.ranked(self.weights.for_user(has_posts), k)
        history = self.known.history.get(post.user_id, {}) if post.user_id else {}
        row = {tag: i for i, tag in enumerate(table.hashtags)}
        reasons, evidence = {}, {}
        for tag, _ in top:
            values = dict(zip(EVIDENCE, table.values[row[tag]].tolist(), strict=True))
            evidence[tag] = {name: round(v, 4) for name, v in values.items() if v}
            reasons[tag] = _reasons(tag, values, history, result.reasons.get(tag, []))
        return Recommendation(
            top, result.user_known, result.neighbours, reasons, result.fused, result.content,
            evidence,
        )  # fmt: skip


def _reasons(
    tag: str, evidence: dict[str, float], history: dict[str, int], model: list[str]
) -> list[str]:
    """Short reasons for one recommended hashtag, strongest evidence first."""
    why = []
    if history.get(tag):
        why.append(f"the user chose it in {history[tag]} known post(s)")
    if evidence["neighbours"] > 0:
        why.append(f"{evidence['neighbours']:.0%} of the weight of the most similar posts")
    why += [reason for reason in model if "training post" not in reason or not history.get(tag)]
    if evidence["model_outside"] > 0:
        why.append(
            f"the network gives it {evidence['model_outside']:.1%} from the known posts that "
            "carry it (outside its training vocabulary)"
        )
    if not why and evidence["popularity"] > 0:
        why.append("one of the most used hashtags")
    return why
