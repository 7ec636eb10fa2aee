"""The package's layers import downward only (the import-linter 'layers' contract, as a test).

Every `mishon` import, at module level or inside a function, must go to a lower layer or stay
within its own package; modules of one layer do not import each other across packages.
Function-level imports are kept for lazy loading only (the command line's start-up time, the
optional extractors), never to dodge an import cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mishon"

# lowest first; a module may import its own package and anything in a lower layer
LAYERS: list[tuple[str, ...]] = [
    ("errors",),
    ("lineage", "metrics", "device", "processes", "locks", "extras"),
    ("config",),
    ("media",),
    ("data",),
    ("features",),
    ("graph",),
    ("model",),
    ("train",),
    ("recommenders",),
    ("evaluate",),
    ("recommend",),
    ("experiments", "report", "serve"),
    ("api",),
    ("cli",),
    ("__main__",),
]
LAZY_IMPORTS_ALLOWED = {"cli", "features", "api"}


def _layer(part: str) -> int:
    for index, names in enumerate(LAYERS):
        if part in names:
            return index
    raise AssertionError(f"mishon.{part} is in no layer of tests/test_layers.py")


def _top(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "mishon":
        return None
    return parts[1] if len(parts) > 1 else None  # `from mishon import __version__`


def _imports() -> list[tuple[str, str, int, bool]]:
    """(importing top-level part, imported module, line, inside a function) for every import."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        source = relative.parts[0].removesuffix(".py")
        if source == "__init__":
            continue
        tree = ast.parse(path.read_text("utf-8"))
        functions = [
            n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        ]
        local = {id(n) for f in functions for n in ast.walk(f)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            else:
                continue
            for module in modules:
                if module.startswith("mishon"):
                    found.append((source, module, node.lineno, id(node) in local, str(relative)))
    return found


def test_every_package_is_in_a_layer() -> None:
    for path in PACKAGE.iterdir():
        name = path.name.removesuffix(".py")
        package = path.is_dir() and (path / "__init__.py").is_file()  # not templates/
        if name not in ("__init__", "__pycache__") and (package or path.suffix == ".py"):
            _layer(name)


@pytest.mark.parametrize("entry", _imports(), ids=lambda e: f"{e[4]}:{e[2]}")
def test_imports_go_downward(entry: tuple[str, str, int, bool, str]) -> None:
    source, module, line, inside_function, where = entry
    target = _top(module)
    if target is None or target == source:
        return
    assert _layer(target) < _layer(source), (
        f"{where}:{line} imports {module}: layer {LAYERS[_layer(source)]} may not import "
        f"layer {LAYERS[_layer(target)]}"
    )
    assert not inside_function or source in LAZY_IMPORTS_ALLOWED, (
        f"{where}:{line} imports {module} inside a function"
    )


def test_config_lists_every_engagement_field_without_importing_data() -> None:
    from mishon.config import MAPPABLE_FIELDS
    from mishon.data.schema import ENGAGEMENT_FIELDS

    assert set(ENGAGEMENT_FIELDS) <= set(MAPPABLE_FIELDS)


def _module_graph() -> dict[str, set[str]]:
    """Each module inside a package (mishon.PACKAGE.MODULE) and the modules of the same package
    it imports, at module level or inside a function."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        if len(name.split(".")) < 3:  # a top-level module or a package's __init__
            continue
        package = name.split(".")[1]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" for a in node.names]
                targets |= {n if n in modules else node.module for n in names}
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
        graph[name] = {
            t
            for t in targets
            if t in modules and t != name and len(t.split(".")) > 2 and t.split(".")[1] == package
        }
    return graph


def test_no_import_cycle_inside_a_package() -> None:
    """A function-level import must not hide a cycle between two modules of one package
    (features/extract.py and features/ray_engine.py had one; both now import features/jobs.py)."""
    graph = _module_graph()
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            assert state.get(target) != 1, "import cycle: " + " -> ".join(
                [*path[path.index(target) :], target]
            )
            if target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
