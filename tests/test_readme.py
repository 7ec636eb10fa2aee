"""The README's Python example runs as written, on a small CSV of captions."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
TOPICS = {
    "sunset": "golden sunset over the sea evening sky orange light",
    "food": "delicious pasta dinner recipe kitchen cheese tomato",
    "dog": "puppy playing fetch in the park happy dog",
    "gym": "morning workout lifting weights fitness training",
}


def python_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text("utf-8"), flags=re.S)
    assert len(blocks) == 1, "the README has one Python example"
    return blocks[0]


def write_posts(path: Path, users: int = 8, posts_per_user: int = 12) -> None:
    rng = np.random.default_rng(0)
    rows = ["id,author,text,tags,time"]
    names = list(TOPICS)
    for u in range(users):
        favourite = names[u % len(names)]
        for p in range(posts_per_user):
            topic = favourite if rng.random() < 0.7 else names[int(rng.integers(len(names)))]
            words = TOPICS[topic].split()
            text = " ".join(rng.choice(words, size=6))
            day = 1 + p * 2 + u % 2
            rows.append(f"u{u}p{p},u{u},{text},{topic};mine{u},2026-01-{day:02d}T12:00:00")
    path.write_text("\n".join(rows) + "\n", "utf-8")


def test_the_readme_python_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_posts(tmp_path / "posts.csv")
    monkeypatch.chdir(tmp_path)
    exec(compile(python_example(), "README.md", "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out.splitlines()
    figures = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in printed[:4]}
    assert set(figures) == {"MISHON", "MISHON live", "popularity", "user history"}
    assert figures["MISHON"] > figures["popularity"]
    suggested = [tag for tag, _ in ast.literal_eval(printed[-1])]  # [(tag, score), ...]
    assert len(suggested) == 5 and "sunset" in suggested
    assert (tmp_path / "runs" / "first" / "evaluation-test.json").is_file()


def _commands() -> dict[str, list[set[str]]]:
    """Every command of the CLI (with its group) and its long options, each as the set of
    names that spell it (`--live` / `--no-live`)."""
    import typer

    from mishon.cli import app

    found: dict[str, list[set[str]]] = {}

    def walk(command: object, path: list[str]) -> None:
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, [*path, name])
            return
        found[" ".join(path)] = [
            {n for n in [*param.opts, *param.secondary_opts] if n.startswith("--")}
            for param in command.params  # type: ignore[attr-defined]
            if getattr(param, "param_type_name", "") == "option" and "--help" not in param.opts
        ]

    walk(typer.main.get_command(app), [])
    return found


def test_the_command_summary_names_every_command_and_option() -> None:
    block = README.read_text("utf-8").split("## Command line", 1)[1].split("```", 2)[1]
    chunks: dict[str, str] = {}
    current = None
    for line in block.splitlines():
        if line.startswith("mishon "):
            words = line.split()
            current = " ".join(words[1:3] if words[1] in ("data", "features") else words[1:2])
            chunks[current] = chunks.get(current, "") + " " + line
        elif current is not None:
            chunks[current] += " " + line
    commands = _commands()
    assert set(chunks) == set(commands), "commands missing from, or unknown to, the summary"
    for name, options in commands.items():
        written = set(re.findall(r"--[a-z][a-z0-9-]*", chunks[name]))
        missing = [sorted(o) for o in options if not o & written]
        assert not missing, f"mishon {name}: {missing} not in the README's summary"
