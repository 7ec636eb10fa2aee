"""`mishon graph`: build a run's heterogeneous graph."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from mishon.cli.common import SetOption, app, console, reports_errors, status
from mishon.config import (
    GraphSettings,
    load_settings,
)
from mishon.errors import MishonError


@app.command("graph")
@reports_errors
def graph(
    dataset: Annotated[Path, typer.Argument(help="Dataset directory with features and a split.")],
    out: Annotated[Path, typer.Option("--out", help="Run directory to write the graph into.")],
    split: Annotated[
        str | None, typer.Option(help="Split name [the dataset's only split].")
    ] = None,
    k: Annotated[
        int | None, typer.Option(help="Neighbours per node for every edge type [10].")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="YAML file of GraphSettings keys.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a graph in OUT.")] = False,
    engine: Annotated[
        Literal["local", "ray"],
        typer.Option(help="local, or ray: kNN and Jaccard shards as Ray tasks (mishon[ray])."),
    ] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address for --engine ray [a local cluster].")
    ] = None,
    assignments: SetOption = None,
) -> None:
    """Build the heterogeneous user / visual / acoustic / textual graph of a dataset."""
    from mishon.graph.build import build_graph
    from mishon.graph.engine import RayEngine
    from mishon.graph.io import METADATA, save_graph

    if (out / METADATA).exists() and not overwrite:
        raise MishonError(f"{out} already holds a graph; pass --overwrite or choose another --out")
    edges = ("user", "visual", "acoustic", "textual")
    settings = load_settings(GraphSettings, config, {e: {"k": k} for e in edges}, assignments)
    runner = RayEngine(address) if engine == "ray" else None
    try:
        with status("building the graph") as shown:
            built = build_graph(
                dataset, split, settings, stage=lambda name: shown.update(name), engine=runner
            )
    finally:
        if runner is not None:
            runner.close()
    save_graph(built, out)
    meta = built.meta
    table = Table(title=f"graph of {dataset} (split {meta['split']!r}) in {out}")
    for column in ("edge type", "edges", "in-degree min / mean / median / max"):
        table.add_column(column, justify="left" if column == "edge type" else "right")
    for name, info in meta["summary"]["edges"].items():
        d = info["in_degree"]
        table.add_row(
            name,
            f"{info['edges']:,}",
            f"{d['min']} / {d['mean']:.2f} / {d['median']:g} / {d['max']}",
        )
    console.print(table)
    nodes = ", ".join(
        f"{t} {v['nodes']:,} ({v['isolated']:,} isolated)"
        for t, v in meta["summary"]["nodes"].items()
    )
    console.print(f"nodes: {nodes}", highlight=False)
    for modality, reason in meta["skipped_modalities"].items():
        console.print(f"{modality}: left out ({reason})")
    for modality, info in meta["knn_method"].items():
        detail = ", ".join(f"{k} {v}" for k, v in info.items() if k != "method")
        console.print(f"{modality} kNN: {info['method']}" + (f" ({detail})" if detail else ""))
    influence = meta["influence"]
    top = ", ".join(f"{p['user_id']} ({p['score']:.4g})" for p in influence["popular"][:10])
    console.print(
        f"influence measure: {influence['measure']}; popular users: {top}", highlight=False
    )
    cold = meta["cold_start"]
    console.print(
        f"cold-start users: {cold['cold_users']:,}, "
        f"linked by {cold['links']:,} edges to popular users"
    )


@app.command("export")
@reports_errors
def export(
    run: Annotated[Path, typer.Argument(help="Run directory written by `mishon train`.")],
    out: Annotated[Path, typer.Argument(help="File to write (e.g. graph.pt).")],
    format: Annotated[
        Literal["pyg"], typer.Option("--format", help="pyg: a PyTorch Geometric HeteroData.")
    ] = "pyg",
    dataset: Annotated[
        Path | None, typer.Option(help="The run's dataset, if it has moved since training.")
    ] = None,
) -> None:
    """Export a run's graph for other tools: a PyG HeteroData with every relation, the posts'
    pooled content, split masks and hashtags (load it with
    `HeteroData.from_dict(torch.load(OUT, weights_only=True))`)."""
    from mishon.api import export_graph

    with status("exporting the graph"):
        data = export_graph(run, out, dataset)
    console.print(
        f"written: {out} ({len(data.node_types)} node types, {len(data.edge_types)} edge types, "
        f"{sum(s.num_edges for s in data.edge_stores):,} edges)",
        highlight=False,
    )
