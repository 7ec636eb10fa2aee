"""A run's graph as PyTorch Geometric's `HeteroData`, for tools beyond MISHON.

Node types are MISHON's: `user` and one per modality (`visual`, `acoustic`, `textual`), a
modality node standing for one post's content in that modality. Every stored relation
(`graph.safetensors`: both directions of each of the paper's edge types) becomes an edge type
with `edge_index` [2, E] (source, destination) and `edge_weight` [E]. A modality node type
holds `x` (the post's pooled content, centred as the graph's kNN sees it, zeros where the post
has none), `has_x`, `post_id`, `user` (its user node), `train_mask`, `val_mask`, `test_mask`;
the user type holds `user_id`. The posts' hashtags are `label_ptr` / `label_index` (CSR rows in
post order, into `vocabulary`), on the data object.

`save_hetero_data` writes `HeteroData.to_dict()` with `torch.save`: only tensors, strings and
lists, so it loads without pickle's code execution (`api.export_graph` writes a run's):
`HeteroData.from_dict(torch.load(PATH, weights_only=True))`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mishon.data.store import atomic_path
from mishon.errors import MishonError
from mishon.graph.build import HeteroGraph


def to_hetero_data(
    graph: HeteroGraph,
    pooled: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    hashtags: list[list[str]] | None = None,
) -> Any:
    """`graph` as a validated `HeteroData`; `pooled`: per modality (vectors [posts, D], present
    [posts]) in the graph's post order; `hashtags`: each post's, in that order."""
    from torch_geometric.data import HeteroData

    data = HeteroData()
    data["user"].num_nodes = graph.num_nodes["user"]
    data["user"].user_id = list(graph.user_ids)
    split = np.asarray(graph.post_split)
    for modality in graph.modalities:
        store = data[modality]
        store.num_nodes = graph.num_nodes[modality]
        store.post_id = list(graph.post_ids)
        store.user = torch.from_numpy(np.asarray(graph.post_user, dtype=np.int64))
        for name, label in (("train_mask", "train"), ("val_mask", "valid"), ("test_mask", "test")):
            store[name] = torch.from_numpy(split == label)
        if pooled is not None and modality in pooled:
            vectors, present = pooled[modality]
            store.x = torch.from_numpy(np.asarray(vectors, dtype=np.float32))
            store.has_x = torch.from_numpy(np.asarray(present, dtype=bool))
    for (source, relation, target), (index, weight) in graph.edges.items():
        data[source, relation, target].edge_index = torch.from_numpy(
            np.ascontiguousarray(index, dtype=np.int64)
        )
        data[source, relation, target].edge_weight = torch.from_numpy(
            np.ascontiguousarray(weight, dtype=np.float32)
        )
    if hashtags is not None:
        vocabulary = sorted({tag for tags in hashtags for tag in tags})
        position = {tag: i for i, tag in enumerate(vocabulary)}
        data.vocabulary = vocabulary
        data.label_ptr = torch.tensor(np.cumsum([0] + [len(t) for t in hashtags]))
        data.label_index = torch.tensor([position[t] for tags in hashtags for t in tags])
    try:
        data.validate(raise_on_error=True)
    except ValueError as exc:  # a graph MISHON built and checked should never get here
        raise MishonError(f"the graph is not a valid HeteroData: {exc}") from None
    return data


def save_hetero_data(data: Any, path: Path) -> Path:
    """Write `data` as its dict of tensors, strings and lists (atomically)."""
    with atomic_path(path) as tmp:
        torch.save(data.to_dict(), tmp)
    return path


def load_hetero_data(path: Path) -> Any:
    """Read what `save_hetero_data` wrote, without unpickling code."""
    from torch_geometric.data import HeteroData

    return HeteroData.from_dict(torch.load(path, weights_only=True))
