"""Saving and loading a graph without pickle: tensors in safetensors, the rest in JSON.

`graph.safetensors` holds, per edge type, `<src>__<rel>__<dst>__index` (int64 [2, E]) and
`...__weight` (float32 [E]), plus `post_user` (int64) and `post_split` (int8 codes);
`graph.json` holds node counts, post and user ids, settings, influence, cold-start links,
the summary and timings.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from mishon.data.schema import SPLIT_LABELS
from mishon.data.store import atomic_path, write_json
from mishon.errors import MishonError
from mishon.graph.build import HeteroGraph

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
    with atomic_path(run / TENSORS) as tmp:
        save_file(tensors, str(tmp))
    write_json(
        {
            "num_nodes": graph.num_nodes,
            "edge_types": [list(t) for t in graph.edges],
            "post_ids": graph.post_ids,
            "user_ids": graph.user_ids,
            **graph.meta,
        },
        run / METADATA,
    )


def load_graph(run: Path) -> HeteroGraph:
    """Read a graph written by `save_graph`."""
    if not (run / TENSORS).is_file() or not (run / METADATA).is_file():
        raise MishonError(f"no graph in {run}: run `mishon graph DATA --out {run}` first")
    meta = json.loads((run / METADATA).read_text("utf-8"))
    tensors = load_file(str(run / TENSORS))
    edges = {
        (src, rel, dst): (
            tensors[f"{src}__{rel}__{dst}__index"],
            tensors[f"{src}__{rel}__{dst}__weight"],
        )
        for src, rel, dst in meta.pop("edge_types")
    }
    return HeteroGraph(
        num_nodes=meta.pop("num_nodes"),
        edges=edges,
        post_ids=meta.pop("post_ids"),
        user_ids=meta.pop("user_ids"),
        post_user=tensors["post_user"],
        post_split=np.array(SPLIT_LABELS, dtype=object)[tensors["post_split"]].astype(str),
        meta=meta,
    )
