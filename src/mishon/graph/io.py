"""Saving and loading a graph without pickle: tensors in safetensors, the rest in JSON.

`graph.safetensors` holds, per edge type, `<src>__<rel>__<dst>__index` (int64 [2, E]) and
`...__weight` (float32 [E]), plus `post_user` (int64) and `post_split` (int8 codes);
`graph.json` holds node counts, post and user ids, settings, influence, cold-start links,
the summary and timings.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from mishon.data.schema import SPLIT_LABELS
from mishon.data.store import atomic_path, complete_pending, pending_path, write_json
from mishon.errors import MishonError
from mishon.graph.build import HeteroGraph
from mishon.lineage import file_digest

TENSORS = "graph.safetensors"
METADATA = "graph.json"


def _key(edge_type: tuple[str, str, str]) -> str:
    return "__".join(edge_type)


def save_graph(graph: HeteroGraph, run: Path) -> None:
    """Write the graph into the run directory `run` (created if needed)."""
    run.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, np.ndarray] = {
        "post_user": graph.post_user.astype(np.int64),
        "post_split": np.array([SPLIT_LABELS.index(s) for s in graph.post_split], dtype=np.int8),
    }
    for edge_type, (index, weight) in graph.edges.items():
        tensors[f"{_key(edge_type)}__index"] = np.ascontiguousarray(index, dtype=np.int64)
        tensors[f"{_key(edge_type)}__weight"] = np.ascontiguousarray(weight, dtype=np.float32)
    # Two files as one: the tensors first under a temporary name, then graph.json with their
    # digest (the commit point), then the tensors take their name; `_complete_save` finishes
    # a save killed after the commit, so a kill at any moment leaves the old or the new graph.
    pending = pending_path(run / TENSORS)
    with atomic_path(pending) as tmp:
        save_file(tensors, str(tmp))
    write_json(
        {
            "tensors_digest": file_digest(pending),
            "num_nodes": graph.num_nodes,
            "edge_types": [list(t) for t in graph.edges],
            "post_ids": graph.post_ids,
            "user_ids": graph.user_ids,
            **graph.meta,
        },
        run / METADATA,
    )
    os.replace(pending, run / TENSORS)


def load_graph(run: Path) -> HeteroGraph:
    """Read a graph written by `save_graph`, checking what it holds (the tensors' digest,
    shapes, node ids in range, finite weights); a damaged graph is an error naming the file."""
    tensors_path, meta_path = run / TENSORS, run / METADATA
    if not meta_path.is_file() and not tensors_path.is_file():
        raise MishonError(f"no graph in {run}: run `mishon graph DATA --out {run}` first")
    rebuild = f"rebuild it with `mishon graph DATA --out {run} --overwrite`"
    try:
        meta = json.loads(meta_path.read_text("utf-8"))
        edge_types = [tuple(t) for t in meta.pop("edge_types")]
        num_nodes = {str(k): int(v) for k, v in meta.pop("num_nodes").items()}
        post_ids, user_ids = meta.pop("post_ids"), meta.pop("user_ids")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise MishonError(f"cannot read {meta_path} ({exc!r}): {rebuild}") from None
    recorded = meta.pop("tensors_digest", None)  # None: a graph saved before digests
    complete_pending(tensors_path, recorded)
    if not tensors_path.is_file():
        raise MishonError(f"{tensors_path} is missing: {rebuild}")
    if recorded is not None and file_digest(tensors_path) != recorded:
        raise MishonError(f"{tensors_path} does not match {meta_path} (its digest): {rebuild}")
    try:
        tensors = load_file(str(tensors_path))
    except (OSError, SafetensorError) as exc:
        raise MishonError(f"cannot read {tensors_path} ({exc}): {rebuild}") from None
    problem = _graph_problem(tensors, edge_types, num_nodes, len(post_ids), len(user_ids))
    if problem:
        raise MishonError(f"{tensors_path}: {problem}: {rebuild}")
    edges = {
        (src, rel, dst): (
            tensors[f"{src}__{rel}__{dst}__index"],
            tensors[f"{src}__{rel}__{dst}__weight"],
        )
        for src, rel, dst in edge_types
    }
    return HeteroGraph(
        num_nodes=num_nodes,
        edges=edges,
        post_ids=post_ids,
        user_ids=user_ids,
        post_user=tensors["post_user"],
        post_split=np.array(SPLIT_LABELS, dtype=object)[tensors["post_split"]].astype(str),
        meta=meta,
    )


def _graph_problem(
    tensors: dict[str, np.ndarray],
    edge_types: list[tuple[str, ...]],
    num_nodes: dict[str, int],
    posts: int,
    users: int,
) -> str | None:
    """What is wrong with a loaded graph's tensors, or None."""
    post_user, post_split = tensors.get("post_user"), tensors.get("post_split")
    if post_user is None or post_user.shape != (posts,):
        return f"post_user is not one user per post ({posts})"
    if posts and not (post_user.min() >= 0 and post_user.max() < users):
        return f"post_user holds user ids outside 0..{users - 1}"
    if post_split is None or post_split.shape != (posts,):
        return f"post_split is not one split per post ({posts})"
    if posts and not (post_split.min() >= 0 and post_split.max() < len(SPLIT_LABELS)):
        return "post_split holds unknown split codes"
    for edge_type in edge_types:
        if len(edge_type) != 3 or edge_type[0] not in num_nodes or edge_type[2] not in num_nodes:
            return f"edge type {edge_type} names an unknown node type"
        src, rel, dst = edge_type
        index = tensors.get(f"{src}__{rel}__{dst}__index")
        weight = tensors.get(f"{src}__{rel}__{dst}__weight")
        if index is None or weight is None:
            return f"edge type {src}-{rel}-{dst} is missing"
        if index.ndim != 2 or index.shape[0] != 2 or weight.shape != (index.shape[1],):
            return f"edge type {src}-{rel}-{dst} has shapes {index.shape} and {weight.shape}"
        for row, node_type in ((0, src), (1, dst)):
            ids, count = index[row], num_nodes[node_type]
            if len(ids) and not (ids.min() >= 0 and ids.max() < count):
                return f"edge type {src}-{rel}-{dst} has {node_type} ids outside 0..{count - 1}"
        if not np.isfinite(weight).all():
            return f"edge type {src}-{rel}-{dst} has weights that are not finite"
    return None
