"""Shared fixtures: a tiny synthetic corpus built once per test session."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from mishon.config import SynthSettings
from mishon.data.synth import World, generate_corpus

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a model hub

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TINY = SynthSettings(users=6, posts=16, seed=3, workers=1, no_sound_fraction=0.25)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, World]:
    out = tmp_path_factory.mktemp("synth") / "tiny"
    world = generate_corpus(out, TINY)
    return out, world


WORDS = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "a",
    "cat",
    "dog",
    "runs",
    "sleeps",
    "fast",
    "the",
]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import torch
    from transformers import (
        BertConfig,
        BertModel,
        BertTokenizerFast,
        ViTConfig,
        ViTModel,
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Model,
    )

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("hf")
    small = {
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
    }
    ViTModel(ViTConfig(image_size=32, patch_size=8, **small)).save_pretrained(root / "vit")
    Wav2Vec2Model(
        Wav2Vec2Config(
            conv_dim=(16, 16),
            conv_stride=(5, 2),
            conv_kernel=(10, 3),
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=2,
            **small,
        )
    ).save_pretrained(root / "wav2vec2")
    Wav2Vec2FeatureExtractor().save_pretrained(root / "wav2vec2")
    BertModel(BertConfig(vocab_size=len(WORDS), **small)).save_pretrained(root / "bert")
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(WORDS) + "\n")
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(root / "bert")
    return {name: root / name for name in ("vit", "wav2vec2", "bert")}


@pytest.fixture(scope="session")
def tiny_extracted(
    tmp_path_factory: pytest.TempPathFactory, tiny_corpus: tuple[Path, World]
) -> Path:
    """The tiny corpus with features from the offline extractors (few units, to stay fast)."""
    from mishon.config import ExtractorSettings, ExtractSettings
    from mishon.features.extract import extract_features

    dataset = tmp_path_factory.mktemp("extracted") / "ds"
    shutil.copytree(tiny_corpus[0], dataset)
    extract_features(
        dataset,
        ExtractSettings(
            visual=ExtractorSettings(name="efficientnet-lite0", units=2),
            acoustic=ExtractorSettings(name="logmel", units=4),
            textual=ExtractorSettings(name="minilm", units=8),
            workers=0,
        ),
    )
    return dataset


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_extracted: Path) -> Path:
    """A run trained for a few epochs on the extracted tiny corpus (random split).

    Tests that write into a run (the service's records, uploads) copy it first.
    """
    from mishon.config import SplitSettings
    from mishon.data.splits import make_split
    from mishon.data.store import read_posts, write_split
    from mishon.train.run import train_model

    from .planted import small_settings

    root = tmp_path_factory.mktemp("tiny-run")
    dataset = root / "ds"
    shutil.copytree(tiny_extracted, dataset)
    assignment, meta = make_split(read_posts(dataset), SplitSettings(strategy="random"))
    write_split(dataset, "random", assignment, meta)
    settings = small_settings(epochs=5)
    settings.graph.popular_min_posts = 1
    train_model(dataset, settings, root / "run")
    return root / "run"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server for this test session (tests/postgres_server.py)."""
    from .postgres_server import postgres_server

    with postgres_server() as url:
        yield url
