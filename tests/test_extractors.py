from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

from mishon.config import ExtractorSettings, ExtractSettings
from mishon.errors import MishonError
from mishon.features.base import ExtractorUnavailable, Modality
from mishon.features.efficientnet import (
    EfficientNetLite0Extractor,
    load_efficientnet_lite0,
    normalize,
)
from mishon.features.logmel import LogMelExtractor, log_mel_frames, mel_filterbank
from mishon.features.registry import create_extractor
from mishon.media.decode import _to_square_rgb

from .media_helpers import package_data

CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


def photo(name: str) -> np.ndarray:
    with av.open(str(package_data("skimage", f"data/{name}"))) as container:
        return _to_square_rgb(next(container.decode(video=0)), 224)


@pytest.fixture(scope="module")
def effnet() -> EfficientNetLite0Extractor:
    return EfficientNetLite0Extractor(units=2)


def test_efficientnet_recognises_real_photos(effnet: EfficientNetLite0Extractor) -> None:
    images = torch.from_numpy(np.stack([photo("chelsea.png"), photo("coffee.png")]))
    with torch.inference_mode():
        network = effnet.network
        logits = network._fc(
            network.features(normalize(images).contiguous(memory_format=torch.channels_last))
        )
    top = logits.argmax(dim=1).tolist()
    assert top[0] in CATS
    assert top[1] == ESPRESSO
    assert logits.softmax(dim=1)[1, ESPRESSO] > 0.8


def test_folded_network_matches_the_original() -> None:
    images = normalize(torch.from_numpy(np.stack([photo("coffee.png")])))
    with torch.inference_mode():
        plain = load_efficientnet_lite0(fuse=False).features(images)
        fused = load_efficientnet_lite0(fuse=True).features(images)
    torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-4)


def test_efficientnet_extractor_masks(effnet: EfficientNetLite0Extractor) -> None:
    clip = np.stack([photo("coffee.png")] * 2)
    values, mask = effnet.encode([clip, None, clip[:1]])
    assert values.shape == (3, 2, 1280) and values.dtype == np.float32
    assert mask.tolist() == [[True, True], [False, False], [True, False]]
    assert np.allclose(values[0, 0], values[2, 0], atol=1e-5)
    assert not values[1].any() and not values[2, 1].any()


def test_logmel_finds_the_tone() -> None:
    rate = 16000
    t = np.arange(rate) / rate
    tone = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    energies = log_mel_frames(tone, rate, 64)
    assert energies.shape == (1 + (rate - 400) // 160, 64)
    bank = mel_filterbank(64, 512, rate)
    centres = (bank * np.fft.rfftfreq(512, 1 / rate)).sum(axis=1)
    loudest = int(energies.mean(axis=0).argmax())
    assert abs(centres[loudest] - 1000) < 100


def test_logmel_extractor_shapes_and_masks() -> None:
    extractor = LogMelExtractor(units=4, n_mels=16)
    rng = np.random.default_rng(0)
    values, mask = extractor.encode(
        [
            rng.standard_normal(16000).astype(np.float32),
            None,
            np.zeros(100, np.float32),
            rng.standard_normal(800).astype(np.float32),
        ]
    )
    assert values.shape == (4, 4, 32) and extractor.dim == 32
    assert mask.tolist() == [[True] * 4, [False] * 4, [False] * 4, [True, True, True, False]]


def test_registry_rejects_wrong_names() -> None:
    run = ExtractSettings()
    with pytest.raises(MishonError, match="unknown visual extractor 'resnet'"):
        create_extractor(Modality.VISUAL, ExtractorSettings(name="resnet"), run)
    with pytest.raises(MishonError, match="'logmel' is a acoustic extractor, not visual"):
        create_extractor(Modality.VISUAL, ExtractorSettings(name="logmel"), run)


def test_missing_weights_say_how_to_provide_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ExtractorUnavailable) as info:
        create_extractor(Modality.VISUAL, ExtractorSettings(name="vit"), ExtractSettings())
    message = str(info.value)
    assert "google/vit-base-patch16-224-in21k" in message
    assert "--visual-model PATH" in message and "huggingface-cli download" in message
    with pytest.raises(ExtractorUnavailable, match="does not exist"):
        create_extractor(
            Modality.TEXTUAL,
            ExtractorSettings(name="bert", model=str(tmp_path / "nope")),
            ExtractSettings(),
        )


def test_packaged_minilm_embeds_captions() -> None:
    extractor = create_extractor(
        Modality.TEXTUAL, ExtractorSettings(name="minilm", units=16), ExtractSettings()
    )
    assert extractor.dim == 384 and "all-MiniLM-L6-v2" in extractor.model_id
    values, mask = extractor.encode(
        ["a cat sleeps on the sofa", None, "a kitten naps on the couch", "stock market crash"]
    )
    assert mask[1].sum() == 0 and mask[0, 0] and mask[0].sum() < 16
    pooled = [values[i][mask[i]].mean(axis=0) for i in (0, 2, 3)]
    cos = lambda a, b: float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))  # noqa: E731
    assert cos(pooled[0], pooled[1]) > cos(pooled[0], pooled[2])


def test_charngram_reads_any_language_without_weights() -> None:
    extractor = create_extractor(
        Modality.TEXTUAL, ExtractorSettings(name="charngram", units=4), ExtractSettings()
    )
    assert (extractor.units, extractor.dim) == (4, 384)
    texts = [
        "Nhảy múa trên bãi biển",  # Vietnamese
        None,
        "танцы танцевать на пляже",  # Russian
        "dancing dancer",
        "stock market",
        "one two three four five six",
    ]
    values, mask = extractor.encode(texts)
    assert mask.sum(axis=1).tolist() == [4, 0, 4, 2, 2, 4]  # a unit a word, up to L
    assert not values[1].any()
    np.testing.assert_allclose(np.linalg.norm(values[mask], axis=1), 1.0, atol=1e-5)
    # same stem, shared n-grams: close; unrelated words: far
    dance, dancer = values[3, 0], values[3, 1]
    assert float(dance @ dancer) > 0.4 > abs(float(dance @ values[4, 0]))
    assert float(values[2, 0] @ values[2, 1]) > 0.3  # танцы / танцевать
    again, _ = extractor.encode(["Nhảy MÚA"])  # case folded, deterministic
    np.testing.assert_array_equal(again[0, :2], values[0, :2])
    with pytest.raises(MishonError, match="no weights"):
        create_extractor(
            Modality.TEXTUAL, ExtractorSettings(name="charngram", model="x"), ExtractSettings()
        )


def test_a_smaller_visual_frame_size_is_recorded_and_read_back(tmp_path: Path) -> None:
    from mishon.features.registry import extractor_of_store
    from mishon.features.store import FeatureStore, StoreSpec, modality_dir

    settings = ExtractSettings(visual_frame_size=96)
    small = create_extractor(Modality.VISUAL, settings.visual, settings)
    assert small.frame_size == 96 and small.model_id.endswith(" at 96 px")
    default = create_extractor(Modality.VISUAL, ExtractSettings().visual, ExtractSettings())
    assert default.frame_size == 224 and " px" not in default.model_id  # stores made before
    frames = np.random.default_rng(0).integers(0, 255, (2, 96, 96, 3), dtype=np.uint8)
    values, mask = small.encode([frames])
    assert values.shape == (1, 8, 1280) and mask[0].tolist() == [True] * 2 + [False] * 6
    # a store made at 96 px gives new posts an extractor reading 96 px frames
    dataset = tmp_path / "ds"
    spec = StoreSpec("visual", small.name, small.model_id, small.units, small.dim)
    FeatureStore.create_or_resume(modality_dir(dataset, "visual"), spec, ["p1"]).finish()
    assert extractor_of_store(dataset, "visual").frame_size == 96
