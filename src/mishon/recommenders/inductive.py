"""Recommending for a post that is not in the graph, without retraining (DESIGN section 8).

At load, the trained network's node states before and after every GraphSAGE layer are computed
once for the whole graph and kept. A new post is then placed like a graph post would be:
- each of its modality nodes gets its k most similar graph posts of that modality (the cosine
  of pooled, centred vectors, the graph's own threshold) as neighbours;
- a known user keeps its cached states; a new user is a cold-start user: its input is the new
  post's content, and it is linked to the popular users whose posts' content is most similar
  (the social-influence links of `mishon graph`);
- only the new nodes are computed, layer by layer, from their neighbours' cached states, by
  the network's own `layer_step` over the post's neighbourhood as a small graph.
The new post does not change the cached states of its neighbours (they would shift slightly
if it joined the graph for good; retraining or a graph rebuild takes it in).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import torch

from mishon.config import EdgeSettings, EvidenceIndexSettings, GraphSettings
from mishon.errors import MishonError
from mishon.features.store import FeatureStore, modality_dir
from mishon.graph.build import POSTED, POSTED_BY, SIMILAR, USER
from mishon.graph.influence import link_cold_users, user_profiles
from mishon.graph.pooled import pool_units, pooled_vectors_and_centre
from mishon.model.inference import FrozenLinear, FrozenNodeLayers
from mishon.model.inputs import EdgeType, adjacency, normalise_units
from mishon.recommenders.index import GrowingIndex
from mishon.train.run import TrainedRun

NodeStates = dict[str, torch.Tensor]  # by node type
LayerStates = list[NodeStates]
LOCAL_KEPT = 4096  # neighbourhood shapes whose small graphs are kept (`_local_adjacency`)


@dataclass
class NewPost:
    """Raw extractor units per modality ([L, D] float, [L] bool), the poster and the sound's
    identity (`data.sounds`), if known."""

    units: dict[str, tuple[np.ndarray, np.ndarray]]
    user_id: str | None = None
    sound: str | None = None


@dataclass
class Neighbour:
    kind: str  # "post" (a modality neighbour) or "user" (a linked popular user)
    id: str
    similarity: float
    modality: str | None = None
    hashtags: list[str] = field(default_factory=list)


@dataclass
class Recommendation:
    hashtags: list[tuple[str, float]]  # (hashtag, probability or live score), best first
    user_known: bool
    neighbours: list[Neighbour]
    reasons: dict[str, list[str]]  # hashtag -> short reasons
    fused: np.ndarray | None = None  # [d]: the post in the model's space
    content: list[tuple[np.ndarray, bool]] = field(default_factory=list)  # pooled, per modality
    evidence: dict[str, dict[str, float]] = field(default_factory=dict)  # hashtag -> values

    def as_dict(self) -> dict[str, Any]:
        return {
            "hashtags": [
                {
                    "hashtag": t,
                    "score": round(s, 6),
                    "reasons": self.reasons.get(t, []),
                    **({"evidence": self.evidence[t]} if t in self.evidence else {}),
                }
                for t, s in self.hashtags
            ],
            "user_known": self.user_known,
            "neighbours": [n.__dict__ for n in self.neighbours],
        }


def _source_kind(edge_type: EdgeType) -> str | None:
    """What a relation sends a new node in its small graph: "similar" (within a type: the
    similar posts, or the linked users), "new" (user -> post, post -> user: the other new
    node), None for a relation the inductive path does not know."""
    src, rel, dst = edge_type
    if rel == SIMILAR and src == dst:
        return "similar"
    if (src == USER and rel == POSTED) or (dst == USER and rel == POSTED_BY):
        return "new"
    return None


@dataclass
class Neighbourhood:
    """A new post's neighbourhood in `fused_for`: its similar graph posts per modality, its
    user's linked users, and whether that user is new (computed, not cached)."""

    neighbours: dict[str, np.ndarray]
    links: np.ndarray
    new_user: bool


@dataclass
class Placement:
    """Where a new post sits: its fused vector [1, d], pooled content per modality, its user's
    graph index (None: a new user), its similar graph posts (best first) and linked users."""

    fused: torch.Tensor
    content: list[tuple[np.ndarray, bool]]
    user: int | None
    found: list[Neighbour]
    linked: list[Neighbour]


class GraphPostIndex:
    """One modality's graph posts, searched by cosine with the graph's k and threshold.

    Vectors are the graph's pooled, centred unit vectors, so the inner product is the cosine the
    graph's kNN edges used. Up to `graph.exact_max` posts one matrix-vector product is exact;
    beyond, a faiss inverted file (`graph.ivf_nlist` lists, else sqrt(N)) searched with the
    `nprobe` the graph build settled on, its candidates re-scored exactly.
    """

    def __init__(
        self,
        vectors: np.ndarray,
        members: np.ndarray,
        edges: EdgeSettings,
        graph: GraphSettings,
        nprobe: int,
    ) -> None:
        """`members`: bool [N], the posts that may be found (present, and searchable)."""
        self.edges = edges
        self.vectors = vectors
        self.members = np.flatnonzero(members)
        self.exact = len(self.members) <= graph.exact_max
        if self.exact:
            self.data = np.ascontiguousarray(vectors[self.members], dtype=np.float32)
            return
        # float16 codes: the nearest to the graph build's float32 scans of the same lists
        settings = EvidenceIndexSettings(
            exact_max=0, nlist=graph.ivf_nlist, nprobe=nprobe, seed=graph.seed,
            codes="float16", refine=1,
        )  # fmt: skip
        self.index = GrowingIndex(vectors, self.members, settings)

    @property
    def method(self) -> str:
        return "exact" if self.exact else f"ivf (nprobe {self.index.index.nprobe})"

    def search(self, vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(graph positions, similarities) of the k nearest posts at or above the threshold,
        best first (ties by position)."""
        k = min(self.edges.k, len(self.members))
        if k == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        query = np.ascontiguousarray(vector, dtype=np.float32)
        if self.exact:
            similarity = self.data @ query
            top = np.argpartition(-similarity, k - 1)[:k]
            found, scores = self.members[top], similarity[top]
        else:
            found = self.index.search(query[None], k)[0]
            found = found[found >= 0]
            scores = self.vectors[found] @ query
        order = np.lexsort((found, -scores))
        found, scores = found[order], scores[order]
        keep = scores >= self.edges.threshold
        return found[keep], scores[keep].astype(np.float32)


class InductiveRecommender:
    """Top-K hashtags with explanations for new posts of known or new users."""

    def __init__(
        self,
        run: TrainedRun,
        pooled: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None,
        states: LayerStates | None = None,
        searchable: np.ndarray | None = None,
    ) -> None:
        """`pooled` (vectors, present, centre per modality) defaults to the feature stores';
        `states` (every layer's node states) to the graph encoded with the training posts'
        hashtag inputs; `searchable` (bool per graph post, default all) are the posts a new
        post may be placed next to (an evaluation of new posts leaves its own part out)."""
        self.run = run
        network, inputs, data = run.network, run.inputs, run.data
        network.eval()
        self.device = inputs.device
        self.network = network
        if states is None:
            with torch.no_grad():
                states = network.layer_states(network.node_inputs(inputs), inputs)
        self.states = states
        self.edge_types: list[EdgeType] = [t for t in network.edge_types if t in inputs.adjacency]
        self.tags = inputs.vocabulary.tags
        self.post_ids = data.posts["post_id"].astype(str).tolist()
        train = data.is_train
        self.train_hashtags = [
            list(tags) if is_train else []
            for tags, is_train in zip(data.posts["hashtags"], train, strict=True)
        ]
        graph_settings = run.settings.graph
        self.user_ids = run.graph.user_ids
        self.user_index = {u: i for i, u in enumerate(self.user_ids)}
        post_user = inputs.post_user.cpu().numpy()
        self.user_history: dict[int, dict[str, int]] = {}
        for position in np.flatnonzero(train):
            history = self.user_history.setdefault(int(post_user[position]), {})
            for tag in self.train_hashtags[position]:
                history[tag] = history.get(tag, 0) + 1
        # the graph posts' pooled vectors, indexed to find a new post's neighbours; the centre
        # places a new post's vector like theirs
        self.centres: dict[str, np.ndarray] = {}
        self.pooled: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.indexes: dict[str, GraphPostIndex] = {}
        if searchable is None:
            searchable = np.ones(len(self.post_ids), dtype=bool)
        popular_profiles = []
        knn_meta = run.graph.meta.get("knn_method", {})
        for modality in network.modalities:
            if pooled is not None:
                vectors, present, centre = pooled[modality]
            else:
                store = FeatureStore.open(modality_dir(data.dataset, modality))
                vectors, present, centre = pooled_vectors_and_centre(store, data.rows)
            self.centres[modality] = centre
            self.pooled[modality] = (vectors, present)
            self.indexes[modality] = GraphPostIndex(
                vectors,
                present & searchable,
                getattr(graph_settings, modality),
                graph_settings,
                int(knn_meta.get(modality, {}).get("nprobe", graph_settings.ivf_nprobe)),
            )
            popular_profiles.append(
                user_profiles(vectors, present & train, post_user, len(self.user_ids))
            )
        self.popular_profiles = popular_profiles
        popular = run.graph.meta["influence"]["popular"]
        self.popular = np.array([self.user_index[p["user_id"]] for p in popular], dtype=np.int64)
        self.cold_links = graph_settings.cold_links
        self._local_kept: dict[tuple[int | bool, ...], dict[EdgeType, torch.Tensor]] = {}

    # ----------------------------------------------------------------- neighbours

    def modality_neighbours(
        self, modality: str, vector: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Graph posts of `modality` most similar to a pooled vector: (positions, similarities)."""
        return self.indexes[modality].search(vector)

    def existing_sources(self, position: int) -> dict[str, np.ndarray]:
        """The graph's own modality in-neighbours of a post already in the graph."""
        sources = {}
        for modality in self.network.modalities:
            adjacency = self.run.inputs.adjacency.get((modality, SIMILAR, modality))
            if adjacency is None:
                sources[modality] = np.zeros(0, dtype=np.int64)
                continue
            crow, col = adjacency.crow_indices(), adjacency.col_indices()
            sources[modality] = col[crow[position] : crow[position + 1]].cpu().numpy()
        return sources

    # ----------------------------------------------------------------- computation

    def _encode_new(self, post: NewPost) -> dict[str, torch.Tensor]:
        states, device = {}, self.device
        for modality in self.network.modalities:
            units, mask = post.units.get(modality, (None, None))
            if units is None:
                states[modality] = torch.zeros((1, self.network.settings.hidden), device=device)
                continue
            # copies: the units may be read-only (memory-mapped, or a recorded post's)
            tensor = normalise_units(torch.tensor(np.asarray(units, np.float32)))
            # rounded to float16 as the trained inputs were stored
            tensor = tensor.to(torch.float16).float()[None].to(device)
            present = torch.tensor(np.asarray(mask, bool))[None].to(device)
            vectors, _ = self.network.encoders[modality](tensor, present)
            states[modality] = vectors
        return states

    def _local_adjacency(
        self, neighbours: dict[str, np.ndarray], links: np.ndarray, new_user: bool
    ) -> dict[EdgeType, torch.Tensor]:
        """The new post's neighbourhood as a small graph, in the network's own relations.

        Row 0 of each modality is the new post, rows 1.. its similar graph posts; row 0 of
        `user` is its user, rows 1.. the linked popular users. Only the new nodes receive
        edges (a known user keeps its cached states, so nothing flows into it), so row 0 is
        each relation's only destination: [1, sources] matrices.
        """
        sizes = {m: 1 + len(neighbours[m]) for m in self.network.modalities}
        sizes[USER] = 1 + len(links)
        key = (*sizes.values(), new_user)  # the small graph depends on nothing else
        kept = self._local_kept.get(key)
        if kept is not None:
            return kept
        local = {}
        for edge_type in self.edge_types:
            src, _, dst = edge_type
            if dst == USER and not new_user:
                continue
            kind = _source_kind(edge_type)
            if kind == "similar":
                sources = np.arange(1, sizes[src])  # the similar posts, or the linked users
            elif kind == "new":
                sources = np.zeros(1, dtype=np.int64)  # the post's user, or the post
            else:
                raise MishonError(
                    f"the inductive path does not know relation {edge_type} of this network"
                )
            index = np.stack([sources, np.zeros_like(sources)]).astype(np.int64)
            local[edge_type] = adjacency(index, sizes[src], 1).to(self.device)
        if len(self._local_kept) >= LOCAL_KEPT:
            self._local_kept.clear()
        self._local_kept[key] = local
        return local

    @torch.no_grad()
    def fused_for(
        self,
        initial: dict[str, torch.Tensor],
        neighbours: dict[str, np.ndarray],
        user: int | None,
        links: np.ndarray,
    ) -> torch.Tensor:
        """The fused vector [1, d] of one post from its initial modality states.

        Each layer is the network's own `layer_step` over the post's neighbourhood
        (`_local_adjacency`), the neighbours at their cached states of that layer; with mean
        aggregation, in evaluation mode, the same layers in their one-node form
        (`FrozenNodeLayers`, `_frozen_step`).
        """
        modalities = self.network.modalities
        if user is None:  # a new user's input is the post's content (no embedding)
            present = [initial[m] for m in modalities if initial[m].abs().sum() > 0]
            user_state = (
                torch.stack(present).mean(0)
                if present
                else torch.zeros_like(initial[modalities[0]])
            )
        else:  # a graph user keeps its cached states
            user_state = self.states[0][USER][user : user + 1]
        nodes = {**initial, USER: user_state}  # each node type's new node
        around = Neighbourhood(neighbours, links, user is None)
        frozen = self.frozen_layers is not None and not self.network.training
        step = self._frozen_step if frozen else self._layer_step
        for layer, cached in enumerate(self.states[:-1]):
            nodes = step(layer, cached, nodes, around)
            if user is not None:
                nodes[USER] = self.states[layer + 1][USER][user : user + 1]
        return self.network.fuse([nodes[m] for m in modalities], nodes[USER])

    def _layer_step(
        self, layer: int, cached: NodeStates, nodes: NodeStates, around: Neighbourhood
    ) -> NodeStates:
        """One layer of `fused_for` by `layer_step` over `_local_adjacency`'s small graph: each
        type's new node at the next layer (a graph user's: unchanged)."""
        types = (*self.network.modalities, USER)
        rows = {**around.neighbours, USER: around.links}  # the cached rows beside the new node
        states = {t: torch.cat([nodes[t], cached[t][self._index(rows[t])]]) for t in types}
        local = self._local_adjacency(around.neighbours, around.links, around.new_user)
        only_first = {t: 1 for t in types}  # the new nodes: nothing else is read
        following = self.network.layer_step(layer, states, local, only_first)
        return {t: following[t][:1] for t in types}

    def _frozen_step(
        self, layer: int, cached: NodeStates, nodes: NodeStates, around: Neighbourhood
    ) -> NodeStates:
        """`_layer_step` through `frozen_layers`, from the same sources as the small graph's (a
        relation within a type: the similar posts or linked users at their cached states, as
        a mean; user -> post and post -> user: the new nodes themselves)."""
        layers = self.frozen_layers
        assert layers is not None

        def mean_of(states: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
            if len(rows) == 0:  # no such neighbour: the mean is 0, as `neighbour_mean`'s
                return states.new_zeros((1, states.shape[1]))
            return states[self._index(rows)].mean(dim=0, keepdim=True)

        rows = {**around.neighbours, USER: around.links}
        similar = {t: mean_of(cached[t], rows[t]) for t in (*self.network.modalities, USER)}
        sources = {
            t: similar[t[0]] if _source_kind(t) == "similar" else nodes[t[0]]
            for t in self.edge_types
        }
        updated = (*self.network.modalities, *([USER] if around.new_user else []))
        following = {
            t: layers.step(
                layer, t, nodes[t], [sources[r] for r in layers.relations_into(layer, t)]
            )
            for t in updated
        }
        return {**nodes, **following}

    @cached_property
    def frozen_layers(self) -> FrozenNodeLayers | None:
        """The network's layers in their one-node form, where they have it and every relation
        is one the small graph knows (else None: `layer_step` over `_local_adjacency`)."""
        known = all(_source_kind(t) is not None for t in self.edge_types)
        if not known or not FrozenNodeLayers.supports(self.network):
            return None
        return FrozenNodeLayers(self.network, self.edge_types)

    @cached_property
    def output(self) -> FrozenLinear:
        """The network's output layer for one post at a time (made on first use: MISHON live
        ranks with its own)."""
        return FrozenLinear.of(self.network)

    @torch.no_grad()
    def probabilities(self, fused: torch.Tensor) -> torch.Tensor:
        """Hashtag probabilities [V] of one post's fused vector [1, d]."""
        return torch.softmax(self.output(fused)[0], dim=0)

    @torch.no_grad()
    def graph_fused(self) -> np.ndarray:
        """The fused vectors [N, d] of the graph's posts (the cached final states)."""
        final = self.states[-1]
        fused = self.network.fuse(
            [final[m] for m in self.network.modalities], final[USER], self.run.inputs.post_user
        )
        return fused.cpu().numpy()

    def existing_links(self, user: int) -> np.ndarray:
        """The graph's user-user in-neighbours of a graph user (its social links)."""
        matrix = self.run.inputs.adjacency.get((USER, SIMILAR, USER))
        if matrix is None:
            return np.zeros(0, dtype=np.int64)
        crow, col = matrix.crow_indices(), matrix.col_indices()
        return col[crow[user] : crow[user + 1]].cpu().numpy()

    def _index(self, positions: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(positions).to(self.device)

    def existing_probabilities(self, position: int, new_user: bool = False) -> torch.Tensor:
        """A graph post through the inductive path with its own graph neighbours (a check).

        With `new_user`, its user is recomputed from this post and the user's graph links as a
        new user would be: the full model's result when that user has this post only and no
        training post (a cold-start user).
        """
        initial = {m: self.states[0][m][position : position + 1] for m in self.network.modalities}
        user = int(self.run.inputs.post_user[position])
        sources = self.existing_sources(position)
        if new_user:
            fused = self.fused_for(initial, sources, None, self.existing_links(user))
        else:
            fused = self.fused_for(initial, sources, user, np.zeros(0, np.int64))
        return self.probabilities(fused)

    def recommend_existing(self, position: int, k: int) -> list[tuple[str, float]]:
        """Top-`k` of a graph post through the inductive path (`existing_probabilities`)."""
        return self._top(self.existing_probabilities(position), k)

    def _top(self, probabilities: torch.Tensor, k: int) -> list[tuple[str, float]]:
        values, indices = torch.topk(probabilities, min(k, len(self.tags)))
        return [
            (self.tags[i], float(v)) for v, i in zip(values.tolist(), indices.tolist(), strict=True)
        ]

    @torch.inference_mode()  # no autograd bookkeeping: about 7% of a placement
    def place(self, post: NewPost) -> Placement:
        """A new post placed in the graph: its neighbours, its user's links and its fused
        vector (steps 1-5 of the module's docstring)."""
        # a user of the graph keeps its cached states; anyone else is a new, cold-start user
        user = self.user_index.get(post.user_id) if post.user_id is not None else None
        initial = self._encode_new(post)
        neighbours, found = {}, []
        profiles = []
        for modality in self.network.modalities:
            given = post.units.get(modality)
            centre = self.centres[modality]
            vector = None if given is None else pool_units(np.asarray(given[0]), given[1], centre)
            profiles.append(vector)
            if vector is None:
                neighbours[modality] = np.zeros(0, dtype=np.int64)
                continue
            positions, similarities = self.modality_neighbours(modality, vector)
            neighbours[modality] = positions
            found += [
                Neighbour(
                    "post",
                    self.post_ids[p],
                    round(float(s), 4),
                    modality,
                    self.train_hashtags[p],
                )
                for p, s in zip(positions.tolist(), similarities.tolist(), strict=True)
            ]
        links = np.zeros(0, dtype=np.int64)
        linked: list[Neighbour] = []
        if user is None:
            links, linked = self._link_new_user(profiles)
        fused = self.fused_for(initial, neighbours, user, links)
        found.sort(key=lambda n: -n.similarity)
        content = [
            (np.zeros_like(self.centres[m]), False) if vector is None else (vector, True)
            for m, vector in zip(self.network.modalities, profiles, strict=True)
        ]
        return Placement(fused, content, user, found, linked)

    def recommend(self, post: NewPost, k: int = 10, explain: int = 5) -> Recommendation:
        """Top-`k` hashtags of the network alone for a new post, with the neighbours and
        reasons behind them."""
        placed = self.place(post)
        top = self._top(self.probabilities(placed.fused), k)
        reasons = self.reasons([t for t, _ in top], placed)
        return Recommendation(
            top,
            placed.user is not None,
            placed.found[: explain * 2] + placed.linked,
            reasons,
            placed.fused[0].cpu().numpy(),
            placed.content,
        )

    def _link_new_user(
        self, profiles: list[np.ndarray | None]
    ) -> tuple[np.ndarray, list[Neighbour]]:
        cold_profiles = []
        for vector, (pop_vectors, _) in zip(profiles, self.popular_profiles, strict=True):
            has = np.zeros(1, dtype=bool)
            values = np.zeros((1, pop_vectors.shape[1]), dtype=np.float32)
            if vector is not None:
                values[0], has[0] = vector, True
            cold_profiles.append((values, has))
        # link_cold_users indexes cold profiles by user: the new user is row 0 of its own
        links = link_cold_users(
            np.array([0]), self.popular, cold_profiles, self.popular_profiles, self.cold_links
        )
        chosen = np.array([p for _, p, _ in links], dtype=np.int64)
        return chosen, [Neighbour("user", self.user_ids[p], round(s, 4)) for _, p, s in links]

    def reasons(
        self, tags: list[str], placed: Placement, history: bool = True
    ) -> dict[str, list[str]]:
        """Per hashtag of `tags`: the user's training uses of it (with `history`), the similar
        graph posts that carry it, the linked popular users who used it."""
        reasons: dict[str, list[str]] = {}
        user = placed.user if history else None
        used = self.user_history.get(user, {}) if user is not None else {}
        linked_history = {
            n.id: self.user_history.get(self.user_index[n.id], {}) for n in placed.linked
        }
        for tag in tags:
            why = []
            if used.get(tag):
                why.append(f"the user used it in {used[tag]} training post(s)")
            similar = [n for n in placed.found if tag in n.hashtags]
            for n in similar[:3]:
                why.append(f"similar {n.modality} post {n.id} ({n.similarity:.2f}) has it")
            for n in placed.linked:
                if linked_history[n.id].get(tag):
                    why.append(f"linked popular user {n.id} used it {linked_history[n.id][tag]}x")
            reasons[tag] = why
        return reasons
