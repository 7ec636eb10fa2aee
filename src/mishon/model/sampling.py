"""Sampled neighbourhoods for mini-batch training (GraphSAGE's layer-wise sampling, on CSR).

For a batch of posts, the top hop's destinations are the posts' modality nodes and their
users; going down, each destination node keeps at most `fanouts[hop]` of its neighbours per
relation (hop 0: the batch's own neighbours, as PyG's `num_neighbors`), and the nodes a hop
reads (its sources) are its destinations followed by the new neighbours, so a destination's
own state is the first rows of its type. At the bottom every user's content input is the
mean over at most `user_posts` of its posts.

Which neighbours a node keeps depends only on (seed, epoch, layer, relation, node): each
edge gets a hash of its CSR position and the node keeps its `fanout` smallest. A post's
computation is therefore the same whatever batch it is in: the union of two batches computes
exactly what the two compute apart (what data-parallel training relies on, and tested).
PyG's samplers need pyg-lib or torch-sparse, which have no wheels here; this works on the
CSR tensors the trainer holds, in numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mishon.graph.build import USER
from mishon.model.inputs import EdgeType, ModelInputs, adjacency

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser over uint64 values: well spread hashes of consecutive integers."""
    x = values.astype(np.uint64) + _GOLDEN
    x ^= x >> np.uint64(30)
    x *= _MIX1
    x ^= x >> np.uint64(27)
    x *= _MIX2
    x ^= x >> np.uint64(31)
    return x


def salt(*parts: int) -> np.uint64:
    """One uint64 from a few integers (seed, epoch, layer, relation)."""
    value = np.zeros(1, dtype=np.uint64)
    for part in parts:
        value = mix64(value ^ np.uint64(part & 0xFFFFFFFFFFFFFFFF))
    return value[0]


def ragged_arange(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """concat(arange(s, s + n) for s, n in zip(starts, lengths)), without a Python loop."""
    total = int(lengths.sum())
    offsets = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts, lengths) + (np.arange(total) - offsets)


def sample_rows(
    crow: np.ndarray, col: np.ndarray, rows: np.ndarray, fanout: int, key: np.uint64
) -> tuple[np.ndarray, np.ndarray]:
    """At most `fanout` columns of each of `rows`: (row position in `rows`, column), rows
    ascending. A row with more keeps the columns whose hashed CSR positions are smallest."""
    starts = crow[rows]
    degrees = crow[rows + 1] - starts
    positions = ragged_arange(starts, degrees)
    owner = np.repeat(np.arange(len(rows)), degrees)
    crowded = np.repeat(degrees > fanout, degrees)
    if crowded.any():
        hashes = mix64(positions[crowded].astype(np.uint64) ^ key)
        crowded_owner = owner[crowded]
        order = np.lexsort((hashes, crowded_owner))
        kept_owner = crowded_owner[order]
        first = np.searchsorted(kept_owner, kept_owner, side="left")
        keep = (np.arange(len(order)) - first) < fanout
        chosen = np.concatenate([positions[~crowded], positions[crowded][order[keep]]])
        owners = np.concatenate([owner[~crowded], kept_owner[keep]])
        order = np.argsort(owners, kind="stable")
        positions, owner = chosen[order], owners[order]
    return owner, col[positions]


@dataclass
class Hop:
    """One GraphSAGE layer over a sampled neighbourhood.

    `adjacency[t]`: destination-major CSR [size[dst], sources of src], values 1; `size[t]`:
    the destinations of type t, the first rows of that type's source states."""

    adjacency: dict[EdgeType, torch.Tensor]
    size: dict[str, int]


@dataclass
class SampledBatch:
    """What `MishonNetwork.encode_sampled` reads for a batch of posts."""

    nodes: dict[str, torch.Tensor]  # bottom-level nodes of each type (graph ids)
    hops: list[Hop]  # bottom to top
    post_user: torch.Tensor  # each batch post's user: its row in the top user states
    user_posts: tuple[torch.Tensor, torch.Tensor]  # CSR over bottom users: sampled posts

    def to(self, device: torch.device) -> SampledBatch:
        return SampledBatch(
            {t: n.to(device) for t, n in self.nodes.items()},
            [Hop({t: a.to(device) for t, a in h.adjacency.items()}, h.size) for h in self.hops],
            self.post_user.to(device),
            (self.user_posts[0].to(device), self.user_posts[1].to(device)),
        )


class NeighbourSampler:
    """Samples `SampledBatch`es of `inputs`' graph over `edge_types`, one fan-out per layer."""

    def __init__(
        self,
        inputs: ModelInputs,
        edge_types: list[EdgeType],
        modalities: list[str],
        fanouts: list[int],
        user_posts: int,
        seed: int,
    ) -> None:
        self.modalities = modalities
        self.fanouts = fanouts
        self.user_posts = user_posts
        self.seed = seed
        self.csr = {
            t: (
                inputs.adjacency[t].crow_indices().cpu().numpy(),
                inputs.adjacency[t].col_indices().cpu().numpy(),
            )
            for t in edge_types
            if t in inputs.adjacency
        }
        self.relation = {t: i for i, t in enumerate(sorted(self.csr))}
        post_user = inputs.post_user.cpu().numpy()
        self.post_user = post_user
        order = np.argsort(post_user, kind="stable")
        counts = np.bincount(post_user, minlength=inputs.num_users)
        self.user_crow = np.concatenate([[0], np.cumsum(counts)])
        self.user_col = order
        sizes = {m: inputs.num_posts for m in modalities} | {USER: inputs.num_users}
        # graph id -> position among a hop's sources; -1 between uses
        self._local = {t: np.full(n, -1, dtype=np.int64) for t, n in sizes.items()}

    def sample(self, posts: torch.Tensor, epoch: int) -> SampledBatch:
        """The sampled computation of `posts` (dataset positions) in epoch `epoch`."""
        seeds = posts.cpu().numpy()
        users, post_user = np.unique(self.post_user[seeds], return_inverse=True)
        destinations = {m: seeds for m in self.modalities} | {USER: users}
        hops = []
        for hop, layer in enumerate(reversed(range(len(self.fanouts)))):
            sources, adjacency = self._hop(destinations, layer, self.fanouts[hop], epoch)
            hops.append(Hop(adjacency, {t: len(d) for t, d in destinations.items()}))
            destinations = sources
        hops.reverse()
        bottom_users = destinations[USER]
        owner, sampled = sample_rows(
            self.user_crow,
            self.user_col,
            bottom_users,
            self.user_posts,
            salt(self.seed, epoch, -1),
        )
        indptr = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=len(bottom_users)))])
        return SampledBatch(
            nodes={t: torch.from_numpy(n.astype(np.int64)) for t, n in destinations.items()},
            hops=hops,
            post_user=torch.from_numpy(post_user.astype(np.int64)),
            user_posts=(torch.from_numpy(indptr), torch.from_numpy(sampled.astype(np.int64))),
        )

    def _hop(
        self, destinations: dict[str, np.ndarray], layer: int, fanout: int, epoch: int
    ) -> tuple[dict[str, np.ndarray], dict[EdgeType, torch.Tensor]]:
        """Sources (destinations first) and sampled adjacency of GraphSAGE layer `layer`."""
        drawn = {}
        for edge_type, (crow, col) in self.csr.items():
            key = salt(self.seed, epoch, layer, self.relation[edge_type])
            rows = destinations[edge_type[2]]
            drawn[edge_type] = sample_rows(crow, col, rows, fanout, key)
        sources = {}
        for node_type, own in destinations.items():
            local = self._local[node_type]
            local[own] = np.arange(len(own))
            found = [c for (s, _, _), (_, c) in drawn.items() if s == node_type]
            candidates = np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
            new = np.unique(candidates[local[candidates] < 0])
            local[new] = len(own) + np.arange(len(new))
            sources[node_type] = np.concatenate([own, new])
        matrices = {}
        for edge_type, (owner, columns) in drawn.items():
            src, _, dst = edge_type
            edges = np.stack([self._local[src][columns], owner])
            matrices[edge_type] = adjacency(edges, len(sources[src]), len(destinations[dst]))
        for node_type, nodes in sources.items():
            self._local[node_type][nodes] = -1
        return sources, matrices
