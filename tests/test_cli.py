from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mishon import __version__
from mishon.cli import app
from mishon.data.synth import World

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_version() -> None:
    assert invoke("--version") == (0, f"mishon {__version__}\n")


def test_synth_split_validate_stats(tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    code, text = invoke("data", "synth", str(out), "--users", "4", "--posts", "8", "--workers", "1")
    assert code == 0, text
    assert "wrote 8 posts by 4 users" in text
    code, text = invoke(
        "data", "split", str(out), "--strategy", "temporal", "--test-fraction", "0.25"
    )
    assert code == 0, text
    assert "split 'temporal'" in text
    code, text = invoke("data", "split", str(out), "--strategy", "temporal")
    assert code == 1 and "exists" in text and "--overwrite" in text
    code, text = invoke("data", "validate", str(out), "--probe-media")
    assert (code, text.strip()) == (0, f"valid: {out}")
    code, text = invoke("data", "stats", str(out), "--json")
    stats = json.loads(text)
    assert stats["posts"] == 8 and stats["users"] == 4 and stats["media"]["with_video"] == 8
    assert stats["engagement_fields"] == ["likes", "comments", "shares", "views"]
    assert stats["splits"]["temporal"]["test"]["posts"] == 2
    code, text = invoke("data", "stats", str(out))
    assert code == 0 and "posts with video" in text


def test_synth_reads_a_yaml_config_and_reports_bad_keys(tmp_path: Path) -> None:
    config = tmp_path / "synth.yaml"
    config.write_text("users: 4\nposts: 8\nworkers: 1\nframe_size: 32\n")
    code, text = invoke("data", "synth", str(tmp_path / "a"), "--config", str(config))
    assert code == 0, text
    config.write_text("users: 4\ncolour: blue\n")
    code, text = invoke("data", "synth", str(tmp_path / "b"), "--config", str(config))
    assert code == 1
    assert f"invalid SynthSettings (config {config})" in text and "colour: Extra inputs" in text


def test_validate_lists_problems_and_fails(tmp_path: Path, tiny_corpus: tuple[Path, World]) -> None:
    out = tmp_path / "ds"
    shutil.copytree(tiny_corpus[0], out)
    (out / "media" / "p000002.mp4").unlink()
    code, text = invoke("data", "validate", str(out))
    assert code == 1
    assert "1 problem(s)" in text and "row 3 (post_id 'p000002'), field 'video'" in text


def test_split_on_a_missing_dataset(tmp_path: Path) -> None:
    code, text = invoke("data", "split", str(tmp_path))
    assert code == 1 and "no posts table here" in text


def test_help_shows_the_defaults_in_brackets() -> None:
    code, text = invoke("data", "split", "--help")
    assert code == 0
    flat = " ".join(text.split())
    assert (
        "[given where the dataset ships a split, else temporal where posts have times, else random]"
        in flat
    )
    assert "Split name [the strategy]" in flat


def test_help_lists_commands_in_pipeline_order() -> None:
    code, text = invoke("--help")
    assert code == 0
    listed = text.split("Commands:")[1].splitlines()
    commands = [line.split()[0] for line in listed if line.startswith("  ") and line[2] != " "]
    assert commands[:5] == ["data", "extract", "features", "graph", "train"]


def test_dotted_assignments_override_single_keys() -> None:
    from mishon.config import ExtractSettings, RunSettings, load_settings, parse_assignments

    assert parse_assignments(["train.epochs=5", "model.graph=false", "train.threads=null"]) == {
        "train": {"epochs": 5, "threads": None},
        "model": {"graph": False},
    }
    settings = load_settings(
        RunSettings, overrides={"graph": {"textual": {"k": 3}}}, assignments=["train.lr=0.01"]
    )
    assert (settings.graph.textual.k, settings.graph.textual.threshold) == (3, 0.2)
    assert settings.train.lr == 0.01
    extract = load_settings(ExtractSettings, overrides={"visual": {"units": 4}})
    assert (extract.visual.name, extract.visual.units) == ("efficientnet-lite0", 4)
    gone = load_settings(ExtractSettings, assignments=["visual.name=null"])
    assert gone.visual.name is None


def test_bad_assignments_name_the_problem() -> None:
    from mishon.config import RunSettings, load_settings, parse_assignments
    from mishon.errors import MishonError

    for text, message in (
        ("train.epochs", "expected KEY=VALUE"),
        ("train..epochs=3", "expected KEY=VALUE"),
        ("train=1", None),
    ):
        if message is None:
            with pytest.raises(MishonError, match=r"train: Input should be a valid dictionary"):
                load_settings(RunSettings, assignments=[text])
        else:
            with pytest.raises(MishonError, match=message):
                parse_assignments([text])
    with pytest.raises(MishonError, match=r"train\.epochs: Input should be greater than"):
        load_settings(RunSettings, assignments=["train.epochs=0"])


def test_choices_are_refused_when_parsed_before_any_work(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mishon.cli import app

    runner = CliRunner()
    missing = str(tmp_path / "no-such-run")  # never opened: the choice is checked first
    for args, listed in (
        (["evaluate", missing, "--protocol", "live"], "'static', 'known-past', 'stream'"),
        (["evaluate", missing, "--placement", "old"], "'graph', 'new'"),
        (["data", "split", missing, "--strategy", "time"], "'temporal', 'random'"),
        (["data", "import", "a.csv", missing, "--format", "xls"], "'csv', 'tsv', 'jsonl'"),
        (["report", missing, "--protocol", "x"], "'static', 'known-past', 'stream'"),
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and listed in result.output, (args, result.output)


def test_no_option_states_its_default_twice() -> None:
    """One default style in help: a hand-written "[X]" or click's "[default: X]", not both."""
    import re

    import typer

    from mishon.cli import app

    def options(command: object) -> list:
        if hasattr(command, "commands"):
            return [o for sub in command.commands.values() for o in options(sub)]
        return [p for p in command.params if getattr(p, "param_type_name", "") == "option"]

    twice = [
        p.opts
        for p in options(typer.main.get_command(app))
        if p.help
        and re.search(r"\[[^]]*\]\.?$", p.help.strip())
        and p.show_default
        and p.default is not None
        and not (p.is_flag and not p.secondary_opts)
    ]
    assert not twice


def test_progress_in_a_log_says_how_long_is_left() -> None:
    import io

    from rich.console import Console

    from mishon.cli.common import LogProgress

    out = io.StringIO()
    progress = LogProgress(Console(file=out, width=200), every=0.0)
    task = progress.add_task("extracting", total=None)
    progress.update(task, total=200)
    task_state = progress.tasks[task]
    task_state["started"] -= 30.0  # 100 posts took 30 s: 100 more take about 30 s
    progress.advance(task, 100)
    last = out.getvalue().splitlines()[-1]
    assert "extracting (100/200, about 30 s left)" in last
    progress.update(task, completed=200)
    assert "left" not in out.getvalue().splitlines()[-1]  # done: nothing left to estimate
