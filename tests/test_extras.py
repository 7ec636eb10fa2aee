"""The core works without the optional extras; a command that needs one names it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

# the serve and report extras' packages (not jinja2: torch and PyG import it too)
BLOCKED = ("fastapi", "uvicorn", "starlette", "prometheus_client", "python_multipart",
           "multipart", "matplotlib")  # fmt: skip

PRELUDE = f"""
import importlib.abc, sys
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}")
        return None
sys.meta_path.insert(0, Missing())
"""


def _without_extras(code: str) -> subprocess.CompletedProcess[str]:
    script = PRELUDE + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )


def test_the_core_imports_and_runs_without_the_serve_and_report_extras(tiny_run: Path) -> None:
    done = _without_extras(
        f"""
        import mishon.api, mishon.experiments, mishon.report
        from mishon.cli import app
        from typer.testing import CliRunner
        runner = CliRunner()
        assert runner.invoke(app, ["--help"]).exit_code == 0
        found = runner.invoke(app, ["recommend", {str(tiny_run)!r}, "--caption", "sea", "--json"])
        assert found.exit_code == 0, found.output
        served = runner.invoke(app, ["serve", {str(tiny_run)!r}])
        assert served.exit_code == 1, served.output
        print(" ".join(served.output.split()))
        report = runner.invoke(app, ["report", {str(tiny_run)!r}])
        print(" ".join(report.output.split()))
        """
    )
    assert done.returncode == 0, done.stderr[-2000:]
    served, report = done.stdout.strip().splitlines()[-2:]
    assert "mishon serve needs the serve extra" in served
    assert "pip install 'mishon[serve]'" in served
    assert "mishon report needs the report extra" in report
