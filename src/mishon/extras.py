"""Optional parts of MISHON and the packages they need (the extras of pyproject.toml).

The core (import, extract, graph, train, evaluate, recommend) needs none of them; `serve`
(fastapi, uvicorn, python-multipart, prometheus-client), `report` (matplotlib),
`tracking`, `postgres` and `ray` each bring their own. A command that needs a missing one says
which extra to install, before it starts any work.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from mishon.errors import MishonError


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import `module`, or a MishonError naming the extra that brings it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MishonError(
            f"{purpose} needs the {extra} extra ({exc}): pip install 'mishon[{extra}]'"
        ) from None


def available(module: str) -> bool:
    """Whether `module` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # a module already imported without a spec
        return True
