"""The transformers code path, with tiny randomly initialised models this test builds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mishon.config import ExtractorSettings, ExtractSettings
from mishon.features.base import Modality
from mishon.features.registry import create_extractor


def build(modality: Modality, name: str, folder: Path, units: int):
    return create_extractor(
        modality, ExtractorSettings(name=name, model=str(folder), units=units), ExtractSettings()
    )


def test_vit_encodes_each_frame(tiny_models: dict[str, Path]) -> None:
    extractor = build(Modality.VISUAL, "vit", tiny_models["vit"], 3)
    assert (extractor.dim, extractor.frame_size) == (32, 32)
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    values, mask = extractor.encode([clip, None])
    assert values.shape == (2, 3, 32)
    assert mask.tolist() == [[True, True, False], [False, False, False]]
    assert not np.allclose(values[0, 0], values[0, 1])
    again, _ = extractor.encode([clip[1:]])
    np.testing.assert_allclose(again[0, 0], values[0, 1], rtol=1e-4, atol=1e-5)


def test_wav2vec2_pools_windows(tiny_models: dict[str, Path]) -> None:
    extractor = build(Modality.ACOUSTIC, "wav2vec2", tiny_models["wav2vec2"], 4)
    assert extractor.dim == 32 and extractor.sample_rate == 16000
    rng = np.random.default_rng(1)
    values, mask = extractor.encode(
        [rng.standard_normal(8000).astype(np.float32), None, np.zeros(100, np.float32)]
    )
    assert values.shape == (3, 4, 32)
    assert mask.tolist() == [[True] * 4, [False] * 4, [False] * 4]


def test_bert_token_states(tiny_models: dict[str, Path]) -> None:
    extractor = build(Modality.TEXTUAL, "bert", tiny_models["bert"], 6)
    assert extractor.dim == 32
    values, mask = extractor.encode(["the cat runs", None, "a dog sleeps fast the cat runs fast"])
    assert values.shape == (3, 6, 32)
    # [CLS] the cat runs [SEP] = 5 tokens; the long caption is truncated to 6
    assert mask.sum(axis=1).tolist() == [5, 0, 6]
    assert not values[0, 5:].any() and not values[1].any()
