"""The `mishon` command line: one thin command per pipeline stage (Typer).

Each module registers its commands on the apps of `common`; the work itself is done by the
library functions they call, so every stage can also be run from Python (`mishon.api`).
"""

from __future__ import annotations

from mishon.cli import data, evaluation, features, graph, serve, train
from mishon.cli.common import app

__all__ = ["app", "data", "evaluation", "features", "graph", "serve", "train"]
