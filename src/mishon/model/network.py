"""The MISHON network (DESIGN section 6): encoders, heterogeneous GraphSAGE, fusion, softmax.

- encoder: per modality, attention over the post's units (or their mean) projected to d (the
  units arrive standardised: `inputs.normalise_units`);
- user input: a learned embedding for users with training posts, plus the mean of the content
  vectors of all their posts (a cold-start user has only the content part);
- hashtag inputs (beyond the paper, `label_inputs`): a training post's modality nodes also get
  the mean embedding of its hashtags, so GraphSAGE carries known hashtags to similar posts,
  to their users and over social links. While training, each epoch shows the hashtags of a
  random `label_rate` share of the training posts (scaled by 1 / label_rate, as dropout does)
  and takes the loss on the others only, so no post ever sees its own hashtags;
- GraphSAGE: one SAGEConv per edge type (HeteroConv, relations summed), over transposed sparse
  CSR adjacency, each layer followed by LayerNorm, ReLU and (graph) dropout, added to its input;
- fusion: the post's refined modality vectors and its user's vector, concatenated, a dense
  layer, then a dense layer with softmax over the hashtag vocabulary.

The model contract is `encode(inputs, label_scale=None)` -> fused post vectors [N, d] (or
`encode_sampled(inputs, batch, label_scale)` for a mini-batch's posts over their sampled
neighbourhood), `loss(fused, ...)` / `summed_loss` and `scores(fused)`; the trainer (which
draws each epoch's `label_scale`) and the evaluator stay outside.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from torch_geometric.nn import HeteroConv, SAGEConv

from mishon.config import ModelSettings
from mishon.model.attention import MeanPooling, ModalityAttention
from mishon.model.inputs import EdgeType, ModelInputs
from mishon.model.loss import linear_cross_entropy
from mishon.model.sampling import SampledBatch
from mishon.model.sparse import MeanSAGEConv, csr_edge_index, remove_generated_source

PYG_AGGREGATOR = {"mean": "mean", "max": "max", "min": "min", "sum": "sum", "product": "mul"}


def kept_edge_types(edge_types: list[EdgeType], settings: ModelSettings) -> list[EdgeType]:
    """The edge types the settings' ablation switches leave in."""
    kept = []
    for src, rel, dst in edge_types:
        if src == dst == "user" and not settings.user_user_edges:
            continue
        if src == dst != "user" and not settings.modality_edges:
            continue
        kept.append((src, rel, dst))
    return kept


def sage_conv(d: int, aggr: str) -> SAGEConv:
    """A SAGEConv; for the mean, the variant with a faster backward over CSR adjacency."""
    conv = MeanSAGEConv(d, d) if aggr == "mean" else SAGEConv(d, d, aggr=aggr)
    remove_generated_source(type(conv))
    return conv


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


_GOLDEN, _MIX1, _MIX2 = (_signed(c) for c in (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9,
                                                0x94D049BB133111EB))  # fmt: skip


def keyed_uniform(seed: int, keys: torch.Tensor, width: int) -> torch.Tensor:
    """Uniform values in [0, 1) [len(keys), width], each a function of (seed, key, column)
    only (splitmix64's mixing on int64, which wraps): a post's draw does not depend on which
    process, batch or position computes it."""
    columns = torch.arange(width, device=keys.device, dtype=torch.int64)
    x = keys.to(torch.int64)[:, None] * _GOLDEN + columns[None, :] + _signed(seed % (1 << 64))
    for shift, multiplier in ((30, _MIX1), (27, _MIX2)):
        x = (x ^ ((x >> shift) & ((1 << (64 - shift)) - 1))) * multiplier
    x = x ^ ((x >> 31) & ((1 << 33) - 1))
    return ((x >> 11) & ((1 << 53) - 1)).to(torch.float64).mul_(2.0**-53).to(torch.float32)


class MishonNetwork(nn.Module):
    def __init__(
        self,
        settings: ModelSettings,
        unit_dims: dict[str, int],
        num_users: int,
        vocabulary_size: int,
        edge_types: list[EdgeType],
    ) -> None:
        super().__init__()
        self.settings = settings
        d = settings.hidden
        self.modalities = list(unit_dims)
        self.encoders = nn.ModuleDict(
            {
                m: ModalityAttention(dim, d, settings.attention_dim)
                if settings.attention
                else MeanPooling(dim, d)
                for m, dim in unit_dims.items()
            }
        )
        # embeddings start at N(0, 1), the scale of the LayerNorm'd messages they are added to:
        # at std 0.1 the graph drowned them and almost no user-specific hashtag was learned
        # (docs/benchmarks.md, synthetic corpus)
        self.user_embedding = nn.Embedding(num_users, d) if settings.user_embedding else None
        if self.user_embedding is not None:
            nn.init.normal_(self.user_embedding.weight, std=1.0)
        self.edge_types = kept_edge_types(edge_types, settings) if settings.graph else []
        # without edges a post's hashtag input reaches only its own (hidden) node: left out
        self.hashtag_embedding = (
            nn.Embedding(vocabulary_size, d) if settings.label_inputs and self.edge_types else None
        )
        if self.hashtag_embedding is not None:
            nn.init.normal_(self.hashtag_embedding.weight, std=1.0)
        node_types = ["user", *self.modalities]
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        if self.edge_types:
            aggr = PYG_AGGREGATOR[settings.aggregator]
            for _ in range(settings.layers):
                self.convs.append(
                    HeteroConv({t: sage_conv(d, aggr) for t in self.edge_types}, aggr="sum")
                )
                self.norms.append(nn.ModuleDict({t: nn.LayerNorm(d) for t in node_types}))
        self.fusion = nn.Linear(len(node_types) * d, d)
        self.output = nn.Linear(d, vocabulary_size)
        self.dropout = nn.Dropout(settings.dropout)
        self.graph_dropout = nn.Dropout(settings.graph_dropout)

    @property
    def uses_hashtag_inputs(self) -> bool:
        return self.hashtag_embedding is not None

    def node_inputs(
        self, inputs: ModelInputs, label_scale: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Initial node states: encoded modality vectors (plus hashtag inputs) and user vectors.

        `label_scale` [N] weighs each post's hashtag input (0 hides it); None shows every
        training post's hashtags, as at evaluation and recommendation.
        """
        states: dict[str, torch.Tensor] = {}
        device = inputs.device
        content = torch.zeros(inputs.num_posts, self.settings.hidden, device=device)
        present_count = torch.zeros(inputs.num_posts, 1, device=device)
        for m in self.modalities:
            units = inputs.modalities[m]
            vectors, present = self.encode_modality(m, units.units, units.mask)
            states[m] = vectors
            content = content + vectors
            present_count = present_count + present[:, None].float()
        content = content / present_count.clamp_min(1)
        user = torch.zeros(inputs.num_users, self.settings.hidden, device=device).index_add(
            0, inputs.post_user, content
        )
        posts_per_user = torch.bincount(inputs.post_user, minlength=inputs.num_users)
        user = user / posts_per_user.clamp_min(1)[:, None].float()
        if self.user_embedding is not None:
            has_embedding = inputs.user_trained
            if self.training and self.settings.user_dropout > 0:
                # drawn by the CPU generator on every device: one seed, one draw
                kept = torch.rand(inputs.num_users) >= self.settings.user_dropout
                kept = kept.to(device)
                has_embedding = has_embedding & kept
            user = user + self.user_embedding.weight * has_embedding[:, None].float()
        states["user"] = user
        if self.hashtag_embedding is not None:
            hashtags = self.hashtag_inputs(inputs, label_scale)
            for m in self.modalities:
                states[m] = states[m] + hashtags
        return states

    def hashtag_inputs(self, inputs: ModelInputs, label_scale: torch.Tensor | None) -> torch.Tensor:
        """[N, d]: each post's target-weighted hashtag embeddings, times its `label_scale`."""
        targets = inputs.targets
        weights = targets.weights
        if label_scale is not None:
            weights = weights * torch.repeat_interleave(label_scale, targets.sizes())
        assert self.hashtag_embedding is not None  # only a network with hashtag inputs
        return F.embedding_bag(
            targets.indices,
            self.hashtag_embedding.weight,
            targets.indptr[:-1],
            mode="sum",
            per_sample_weights=weights,
        )

    def encode_modality(
        self, modality: str, units: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder output for all posts, a chunk at a time, in float32.

        While training a large modality (`checkpoint_above`), each chunk's activations are
        recomputed in the backward pass instead of kept, so memory holds the float16 units and
        the [N, d] outputs, not [N, L, *] float32 tensors.
        """
        encoder = self.encoders[modality]
        chunk = self.settings.encode_chunk
        recompute = torch.is_grad_enabled() and units.numel() > self.settings.checkpoint_above
        vectors, present = [], []
        for start in range(0, len(units), chunk):
            args = (units[start : start + chunk], mask[start : start + chunk])
            if recompute:
                v, p = checkpoint(_encode_chunk, encoder, *args, use_reentrant=False)
            else:
                v, p = _encode_chunk(encoder, *args)
            vectors.append(v)
            present.append(p)
        return torch.cat(vectors), torch.cat(present)

    def propagate(
        self, states: dict[str, torch.Tensor], inputs: ModelInputs
    ) -> dict[str, torch.Tensor]:
        """GraphSAGE layers over the kept edge types (identity for the content-only model)."""
        adjacency = {t: inputs.adjacency[t] for t in self.edge_types if t in inputs.adjacency}
        for layer in range(len(self.convs)):  # only the current layer's states are held
            states = self.layer_step(layer, states, adjacency)
        return states

    def layer_states(
        self, states: dict[str, torch.Tensor], inputs: ModelInputs
    ) -> list[dict[str, torch.Tensor]]:
        """Node states before the first layer and after each (what inductive steps reuse)."""
        adjacency = {t: inputs.adjacency[t] for t in self.edge_types if t in inputs.adjacency}
        layers = [states]
        for layer in range(len(self.convs)):
            states = self.layer_step(layer, states, adjacency)
            layers.append(states)
        return layers

    def layer_step(
        self,
        layer: int,
        states: dict[str, torch.Tensor],
        adjacency: dict[EdgeType, torch.Tensor],
        sizes: dict[str, int] | None = None,
    ) -> dict[str, torch.Tensor]:
        """One GraphSAGE layer over any graph: the whole one, a sampled neighbourhood, or a
        new post's neighbourhood.

        Each relation of `adjacency` (destination-major CSR, values 1) runs its SAGEConv; a node
        type that receives relations gets its state plus their normalised, activated sum, the
        others keep theirs. `sizes`: the destinations of each type are the first `sizes[t]`
        nodes of `states[t]` (a sampled hop); None: all of them. Relations are added one at a
        time (HeteroConv's sum would hold every relation's output at once).
        """
        sizes = sizes or {t: len(x) for t, x in states.items()}
        relations: Any = self.convs[layer].convs  # HeteroConv's ModuleDict, by edge type
        messages: dict[str, torch.Tensor] = {}
        for edge_type, matrix in adjacency.items():
            src, _, dst = edge_type
            if self.settings.aggregator in ("max", "min") and matrix.is_cuda:
                matrix = csr_edge_index(matrix)
            sent = relations[edge_type]((states[src], states[dst][: sizes[dst]]), matrix)
            messages[dst] = messages[dst] + sent if dst in messages else sent
        norms: Any = self.norms[layer]
        return {
            t: self.update(norms[t], states[t][:n], messages[t]) if t in messages else states[t][:n]
            for t, n in sizes.items()
        }

    def update(self, norm: nn.Module, state: torch.Tensor, messages: torch.Tensor) -> torch.Tensor:
        """A node's next state: its state plus the normalised, activated relation sum.

        While training, the normalisation and activation are recomputed in backward: only the
        relation sum is kept, not also its normalised and activated copies.
        """
        if torch.is_grad_enabled() and messages.requires_grad:
            activated = checkpoint(_norm_relu, norm, messages, use_reentrant=False)
        else:
            activated = _norm_relu(norm, messages)
        return state + self.graph_dropout(activated)

    def fuse(
        self,
        modality_states: list[torch.Tensor],
        user_states: torch.Tensor,
        post_user: torch.Tensor | None = None,
        dropout_keys: torch.Tensor | None = None,
        dropout_seed: int = 0,
    ) -> torch.Tensor:
        """Fused post vectors from the refined modality vectors and the post's user vector.

        While training, `dropout_keys` (the posts' graph indices) draw each post's dropout mask
        from (`dropout_seed`, post) (`keyed_uniform`) instead of the process's generator.

        The dense layer over [modalities..., user] is applied block by block: no concatenated
        [N, 4d] copy, and the user block is computed once per user, then gathered by
        `post_user` (when None, `user_states` has one row per post).
        """
        blocks = self.fusion.weight.split(self.settings.hidden, dim=1)
        fused = F.linear(user_states, blocks[-1], self.fusion.bias)
        if post_user is not None:
            fused = fused[post_user]
        for states, block in zip(modality_states, blocks[:-1], strict=True):
            fused = fused + F.linear(states, block)
        fused = F.relu(fused)
        if self.training and dropout_keys is not None and self.settings.dropout > 0:
            # each post's mask is a function of (seed, post) alone: the same in one process
            # or in any number of data-parallel processes, whatever slice holds the post
            keep = keyed_uniform(dropout_seed, dropout_keys, fused.shape[1]) >= self.dropout.p
            return fused * keep.to(fused.dtype) / (1.0 - self.dropout.p)
        return self.dropout(fused)

    def encode_sampled(
        self,
        inputs: ModelInputs,
        batch: SampledBatch,
        label_scale: torch.Tensor | None = None,
        posts: torch.Tensor | None = None,
        dropout_seed: int = 0,
    ) -> torch.Tensor:
        """Fused vectors [batch posts, d] of a batch's posts over its sampled
        neighbourhood (mini-batch training: `sampling.NeighbourSampler`); `posts`, the batch's
        posts, key their dropout masks (see `fuse`)."""
        states = self.sampled_node_inputs(inputs, batch, label_scale)
        for layer, hop in enumerate(batch.hops):
            states = self.layer_step(layer, states, hop.adjacency, hop.size)
        return self.fuse(
            [states[m] for m in self.modalities], states["user"], batch.post_user, posts,
            dropout_seed,
        )  # fmt: skip

    def sampled_node_inputs(
        self, inputs: ModelInputs, batch: SampledBatch, label_scale: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """`node_inputs` of a batch's bottom nodes; each user's content is the mean over the
        batch's sample of its posts."""
        states: dict[str, torch.Tensor] = {}
        indptr, sampled = batch.user_posts
        content = torch.zeros(len(sampled), self.settings.hidden, device=inputs.device)
        present_count = torch.zeros(len(sampled), 1, device=inputs.device)
        for m in self.modalities:
            units = inputs.modalities[m]
            nodes = len(batch.nodes[m])
            # a post both a node and in a user's sample is encoded once
            posts, inverse = torch.unique(torch.cat([batch.nodes[m], sampled]), return_inverse=True)
            vectors, present = self.encode_modality(m, units.units[posts], units.mask[posts])
            vectors, present = vectors[inverse], present[inverse]
            states[m] = vectors[:nodes]
            content = content + vectors[nodes:]
            present_count = present_count + present[nodes:, None].float()
        content = content / present_count.clamp_min(1)
        users = batch.nodes["user"]
        owner = torch.repeat_interleave(
            torch.arange(len(users), device=inputs.device), indptr[1:] - indptr[:-1]
        )
        user = torch.zeros(len(users), self.settings.hidden, device=inputs.device)
        user = user.index_add(0, owner, content)
        user = user / (indptr[1:] - indptr[:-1]).clamp_min(1)[:, None].float()
        if self.user_embedding is not None:
            has_embedding = inputs.user_trained[users]
            if self.training and self.settings.user_dropout > 0:
                kept = torch.rand(len(users)) >= self.settings.user_dropout
                has_embedding = has_embedding & kept.to(inputs.device)
            user = user + self.user_embedding(users) * has_embedding[:, None].float()
        states["user"] = user
        if self.hashtag_embedding is not None:
            for m in self.modalities:
                states[m] = states[m] + self.post_hashtag_inputs(
                    inputs, batch.nodes[m], label_scale
                )
        return states

    def post_hashtag_inputs(
        self, inputs: ModelInputs, posts: torch.Tensor, label_scale: torch.Tensor | None
    ) -> torch.Tensor:
        """`hashtag_inputs` of the posts `posts` only."""
        row, index, weight = inputs.targets.rows(posts)
        if label_scale is not None:
            weight = weight * label_scale[posts][row]
        assert self.hashtag_embedding is not None
        rows = self.hashtag_embedding(index) * weight[:, None]
        out = torch.zeros(len(posts), self.settings.hidden, device=inputs.device)
        return out.index_add(0, row, rows)

    def encode(self, inputs: ModelInputs, label_scale: torch.Tensor | None = None) -> torch.Tensor:
        """Fused vectors [N, d] of every post of the graph (`label_scale`: see node_inputs)."""
        states = self.propagate(self.node_inputs(inputs, label_scale), inputs)
        return self.fuse([states[m] for m in self.modalities], states["user"], inputs.post_user)

    def scores(self, fused: torch.Tensor) -> torch.Tensor:
        """Logits [rows, V] over the vocabulary (softmax gives the hashtag distribution)."""
        return self.output(fused)

    def loss(
        self, fused: torch.Tensor, inputs: ModelInputs, positions: torch.Tensor, chunk: int
    ) -> torch.Tensor:
        """Mean cross-entropy of `positions` against their target distributions.

        The [posts, V] logits exist one chunk of `chunk` posts at a time
        (`loss.linear_cross_entropy`).
        """
        return self.summed_loss(fused[positions], inputs, positions, chunk) / max(len(positions), 1)

    def summed_loss(
        self, fused: torch.Tensor, inputs: ModelInputs, posts: torch.Tensor, chunk: int
    ) -> torch.Tensor:
        """Summed cross-entropy of the fused vectors of `posts` (row i: post posts[i])."""
        return linear_cross_entropy(
            fused, self.output.weight, self.output.bias, inputs.targets.rows(posts), chunk
        )


def _norm_relu(norm: nn.Module, messages: torch.Tensor) -> torch.Tensor:
    return F.relu(norm(messages))


def _encode_chunk(
    encoder: nn.Module, units: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    return encoder(units.float(), mask)
