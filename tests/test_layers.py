"""The package's import rules: the import-linter contracts of pyproject.toml (layers that
import downward only; no import cycle among the modules of a package, imports inside
functions counted), and imports inside functions only where they load something lazily."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "mishon"
# packages whose function-level imports load heavy or optional parts lazily: the command
# line's start-up time, the optional extractors, the Python API's optional extras
LAZY_IMPORTS_ALLOWED = {"cli", "features", "api"}


def _lint_imports(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """import-linter on the contracts of `cwd`'s pyproject.toml, in its own process (it
    configures logging, which would silence the loggers of the tests that follow)."""
    code = (
        "from importlinter import cli; "
        "raise SystemExit(cli.lint_imports(no_cache=True, no_logo=True))"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300,
        env=env,
    )  # fmt: skip


def test_the_import_contracts_hold() -> None:
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout[-2000:]  # 0: every contract kept


def _imports() -> list[tuple[str, str, int, bool, str]]:
    """(importing top-level part, imported module, line, inside a function, file) for every
    `mishon` import."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        source = relative.parts[0].removesuffix(".py")
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


def test_imports_inside_functions_only_load_lazily() -> None:
    """Outside the packages that load lazily, a `mishon` import inside a function would only
    hide a dependency (or a cycle) from a reader: none is allowed."""
    hidden = [
        f"{where}:{line} imports {module} inside a function"
        for source, module, line, inside, where in _imports()
        if inside and source not in LAZY_IMPORTS_ALLOWED and module.split(".")[1:2] != [source]
    ]
    assert not hidden, hidden


def test_config_lists_every_engagement_field_without_importing_data() -> None:
    from mishon.config import MAPPABLE_FIELDS
    from mishon.data.schema import ENGAGEMENT_FIELDS

    assert set(ENGAGEMENT_FIELDS) <= set(MAPPABLE_FIELDS)


def test_the_contracts_would_see_a_cycle_hidden_in_a_function(tmp_path: Path) -> None:
    """The acyclic contract counts function-level imports: a copy of the package with a lazy
    import back from ray_engine to extract breaks it."""
    import shutil

    copy = tmp_path / "src"
    shutil.copytree(PACKAGE, copy / "mishon", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    engine = copy / "mishon" / "features" / "ray_engine.py"
    engine.write_text(
        engine.read_text("utf-8")
        + "\n\ndef _back() -> None:\n    from mishon.features.extract import extract_features\n"
    )
    done = _lint_imports(tmp_path, {**os.environ, "PYTHONPATH": str(copy)})
    assert done.returncode == 1 and ".ray_engine -> .extract" in done.stdout, done.stdout[-800:]
