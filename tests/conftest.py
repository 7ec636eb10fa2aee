"""Shared fixtures: a tiny synthetic corpus built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from mishon.config import SynthSettings
from mishon.data.synth import World, generate_corpus

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TINY = SynthSettings(users=6, posts=16, seed=3, workers=1, no_sound_fraction=0.25)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, World]:
    out = tmp_path_factory.mktemp("synth") / "tiny"
    world = generate_corpus(out, TINY)
    return out, world
