"""Neighbour mean over a CSR adjacency with a cached transpose for the backward pass.

torch.sparse.mm(adj, x, reduce="mean") transposes (sorts) the adjacency on every backward
call; over the whole graph that sort cost more than the products themselves. The adjacency
is fixed during training, so its transpose is built once per tensor and kept on it.
The result and gradients equal SAGEConv's own (tests/test_model.py).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from torch_geometric.nn import SAGEConv

TRANSPOSE_ATTRIBUTE = "_mishon_transpose"
DEGREE_ATTRIBUTE = "_mishon_degree"
EDGE_INDEX_ATTRIBUTE = "_mishon_edge_index"


def _degree(adj: torch.Tensor) -> torch.Tensor:
    # kept on the tensor itself: sparse tensors cannot be weakly referenced as dictionary keys
    cached = getattr(adj, DEGREE_ATTRIBUTE, None)
    if cached is None:
        crow = adj.crow_indices()
        cached = (crow[1:] - crow[:-1]).clamp_min(1).to(adj.dtype)[:, None]
        setattr(adj, DEGREE_ATTRIBUTE, cached)
    return cached


def _transpose(adj: torch.Tensor) -> torch.Tensor:
    # built on the first backward only: a pass without gradient (evaluation) never holds it
    cached = getattr(adj, TRANSPOSE_ATTRIBUTE, None)
    if cached is None:
        cached = adj.to_sparse_coo().t().coalesce().to_sparse_csr()
        setattr(adj, TRANSPOSE_ATTRIBUTE, cached)
    return cached


def csr_edge_index(adj: torch.Tensor) -> torch.Tensor:
    """The [2, E] (source, destination) edge index of a destination-major CSR adjacency.

    PyG aggregates max and min over sparse tensors on the CPU only; on a GPU those aggregators
    take the edge index (the same result: tests/test_model.py). Kept on the tensor.
    """
    cached = getattr(adj, EDGE_INDEX_ATTRIBUTE, None)
    if cached is None:
        crow, col = adj.crow_indices(), adj.col_indices()
        rows = torch.arange(len(crow) - 1, device=crow.device)
        cached = torch.stack([col, torch.repeat_interleave(rows, crow[1:] - crow[:-1])])
        setattr(adj, EDGE_INDEX_ATTRIBUTE, cached)
    return cached


class _NeighbourMean(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        degree = _degree(adj)
        ctx.adj, ctx.degree = adj, degree
        return torch.sparse.mm(adj, x) / degree

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return torch.sparse.mm(_transpose(ctx.adj), grad / ctx.degree), None


def neighbour_mean(adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Row-wise mean of `x` over the columns of the CSR `adj` (rows without neighbours: 0)."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _NeighbourMean.apply(x, adj)
    # no backward to prepare for (ranking a new post runs 14 of these a post)
    return torch.sparse.mm(adj, x) / _degree(adj)


def remove_generated_source(cls: type) -> None:
    """PyG writes the `propagate` it generates for a MessagePassing subclass to a file in the
    system's temporary folder, once per process, and leaves it there (136 files after a day
    of test runs). The module is loaded by then; its file goes."""
    module = sys.modules.get(f"{cls.__module__}_{cls.__name__}_propagate")
    source = getattr(module, "__file__", None)
    if source and Path(source).parent == Path(tempfile.gettempdir()):
        Path(source).unlink(missing_ok=True)


class MeanSAGEConv(SAGEConv):
    """SAGEConv with mean aggregation whose CSR path uses `neighbour_mean`.

    The mean is linear, so lin_l(mean(x_src)) = mean(x_src W^T) + b wherever a node has
    neighbours (and b where it has none, as lin_l(0)). When sources are fewer than destinations
    (user -> post relations: 6,786 users, 213,847 posts at paper scale) the sources are
    transformed first: a [users, d] product instead of a [posts, d] one, and no [posts, d]
    aggregate kept for backward.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, aggr="mean")

    def forward(self, x, edge_index, size=None):
        sparse = isinstance(edge_index, torch.Tensor) and edge_index.layout == torch.sparse_csr
        if not sparse or not isinstance(x, tuple) or self.project or self.normalize:
            return super().forward(x, edge_index, size)
        x_src, x_dst = x
        if x_src.size(0) < edge_index.size(0):
            out = neighbour_mean(edge_index, x_src @ self.lin_l.weight.t()) + self.lin_l.bias
        else:
            out = self.lin_l(neighbour_mean(edge_index, x_src))
        if self.root_weight and x_dst is not None:
            out = out + self.lin_r(x_dst)
        return out

    def message_and_aggregate(self, adj_t, x):
        if isinstance(adj_t, torch.Tensor) and adj_t.layout == torch.sparse_csr:
            return neighbour_mean(adj_t, x[0])
        return super().message_and_aggregate(adj_t, x)
