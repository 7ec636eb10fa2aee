"""What the trained network computes outside the optimiser, shared by training (validation),
the recommenders and the inductive hashtag side: posts encoded in evaluation mode, the best
hashtags of encoded posts, the hashtag-input split of an epoch, and frozen forms of the output
layer and of the GraphSAGE layers for one new node at a time (ranking a new post)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mishon.model.inputs import EdgeType, ModelInputs
from mishon.model.network import MishonNetwork
from mishon.model.sampling import NeighbourSampler
from mishon.model.sparse import MeanSAGEConv


class FrozenLinear:
    """`x @ weight.T + bias` of a linear layer whose weights no longer change (a trained
    network's output layer, when ranking), the weight kept transposed and contiguous [d, R].

    Ranking one post multiplies one row by the whole layer, and that product reads the weight
    from memory: in this layout it is 1.9-2.7x faster on CPU than `nn.Linear`'s (one thread,
    one row against 15,000 x 128: 1.16 ms against 0.43 ms; against 50,000 x 128: 3.64 ms
    against 1.13 ms).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """`weight` [R, d] and `bias` [R], as `nn.Linear` holds them (copied)."""
        self.weight_t = weight.detach().T.contiguous()
        self.bias = bias.detach().clone()

    @classmethod
    def of(cls, network: MishonNetwork) -> FrozenLinear:
        """The network's output layer: logits over its vocabulary."""
        return cls(network.output.weight, network.output.bias)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """[B, R] for `x` [B, d], without gradient."""
        with torch.no_grad():
            return torch.addmm(self.bias, x.to(self.weight_t.dtype), self.weight_t)


@dataclass
class _Destination:
    relations: list[EdgeType]  # the relations into this node type, in the network's order
    weight_t: torch.Tensor  # [(1 + len(relations)) d, d]: the summed root weights, each lin_l
    bias: torch.Tensor  # [d]: the relations' lin_l biases, summed
    norm: nn.Module


class FrozenNodeLayers:
    """The network's GraphSAGE layers (mean aggregation) for one node of a type at a time, its
    weights frozen: how a new post's nodes and a new user are computed while ranking.

    `layer_step` sends each relation's message, lin_l(mean of the sources) + lin_r(the node),
    as its own SAGEConv and adds them up: 2 products per relation. For one node that sum is
    one product, [node, mean_1, ..., mean_k] @ [sum of the lin_r weights, lin_l_1, ...,
    lin_l_k]^T + the summed biases: the same sum in another order, equal up to float rounding
    (tests/test_recommend.py compares it with `layer_step`). Then the same update: the node
    plus ReLU(LayerNorm(message)).
    """

    def __init__(self, network: MishonNetwork, edge_types: list[EdgeType]) -> None:
        """The layers over the relations `edge_types` (those of the network the graph has)."""
        self.layers: list[dict[str, _Destination]] = []
        into: dict[str, list[EdgeType]] = {}  # by destination type
        for edge_type in edge_types:
            into.setdefault(edge_type[2], []).append(edge_type)
        with torch.no_grad():
            for layer, hetero in enumerate(network.convs):
                relations: Any = hetero.convs  # HeteroConv's ModuleDict, by edge type
                norms: Any = network.norms[layer]
                frozen = {}
                for node_type, types in into.items():
                    convs = [relations[t] for t in types]
                    root = torch.stack([c.lin_r.weight for c in convs]).sum(0)
                    weight = torch.cat([root, *(c.lin_l.weight for c in convs)], dim=1)
                    bias = torch.stack([c.lin_l.bias for c in convs]).sum(0)
                    frozen[node_type] = _Destination(
                        types, weight.T.contiguous(), bias.clone(), norms[node_type]
                    )
                self.layers.append(frozen)

    @staticmethod
    def supports(network: MishonNetwork) -> bool:
        """Whether the network's layers have this form (mean aggregation, a root weight, no
        projection or normalisation of the output); other aggregators take `layer_step`."""
        return all(
            isinstance(conv, MeanSAGEConv)
            and conv.root_weight
            and not conv.project
            and not conv.normalize
            and conv.lin_l.bias is not None
            for hetero in network.convs
            for conv in cast(Any, hetero).convs.values()
        )

    def relations_into(self, layer: int, node_type: str) -> list[EdgeType]:
        into = self.layers[layer].get(node_type)
        return into.relations if into is not None else []

    def step(
        self, layer: int, node_type: str, node: torch.Tensor, sources: list[torch.Tensor]
    ) -> torch.Tensor:
        """The next state [1, d] of one node [1, d] of `node_type` from the mean of each
        relation's sources ([1, d] each, zeros where a relation has none), in the order of
        `relations_into`; a type no relation goes into keeps its state."""
        into = self.layers[layer].get(node_type)
        if into is None:
            return node
        message = torch.addmm(into.bias, torch.cat([node, *sources], dim=1), into.weight_t)
        return node + F.relu(into.norm(message))


def top_k(network: MishonNetwork, fused: torch.Tensor, positions: np.ndarray, k: int) -> np.ndarray:
    """Vocabulary indices [len(positions), k] of the best-scored hashtags, best first."""
    ranked = []
    with torch.no_grad():
        for start in range(0, len(positions), 4096):
            block = torch.from_numpy(positions[start : start + 4096]).to(fused.device)
            ranked.append(torch.topk(network.scores(fused[block]), k, dim=1).indices.cpu())
    if not ranked:
        return np.zeros((0, k), dtype=np.int64)
    return torch.cat(ranked).numpy()


def encode_eval(network: MishonNetwork, inputs: ModelInputs) -> torch.Tensor:
    """Fused post vectors in evaluation mode (no dropout, no gradient)."""
    was_training = network.training
    network.eval()
    with torch.no_grad():
        fused = network.encode(inputs)
    network.train(was_training)
    return fused


def encode_sampled_eval(
    network: MishonNetwork,
    inputs: ModelInputs,
    sampler: NeighbourSampler,
    positions: np.ndarray,
    batch_size: int,
) -> torch.Tensor:
    """Fused vectors [len(positions), d] of those posts over sampled neighbourhoods, in
    evaluation mode; always the same sample (epoch 0: no training epoch draws it)."""
    was_training = network.training
    network.eval()
    fused = []
    with torch.no_grad():
        for start in range(0, len(positions), batch_size):
            posts = torch.from_numpy(positions[start : start + batch_size])
            batch = sampler.sample(posts, epoch=0).to(inputs.device)
            fused.append(network.encode_sampled(inputs, batch))
    network.train(was_training)
    return torch.cat(fused)


def label_split(
    network: MishonNetwork,
    positions: torch.Tensor,
    num_posts: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """One epoch's hashtag-input weights [num_posts] and loss posts, drawn from `positions`.

    A random `label_rate` share of the training posts shows its hashtags, scaled by
    1 / label_rate so that a neighbour mean matches evaluation's, where all show; the others
    hide theirs and are the loss posts. Without hashtag inputs: (None, all of `positions`).
    """
    if not network.uses_hashtag_inputs:
        return None, positions
    rate = network.settings.label_rate
    # drawn by a CPU generator whatever the device: a seed gives the same split everywhere
    shown = (torch.rand(len(positions), generator=generator) < rate).to(positions.device)
    if shown.all():  # a tiny training set: keep at least one loss post
        shown[0] = False
    scale = torch.zeros(num_posts, device=positions.device)
    scale[positions[shown]] = 1.0 / rate
    return scale, positions[~shown]
