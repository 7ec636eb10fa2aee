"""Extractors by name: the configuration names one per modality."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from mishon.config import ExtractorSettings, ExtractSettings
from mishon.device import resolve_device
from mishon.errors import MishonError
from mishon.features.base import Extractor, Modality
from mishon.features.store import modality_dir, read_store_manifest

Factory = Callable[[ExtractorSettings, ExtractSettings], Extractor]


def _efficientnet(spec: ExtractorSettings, run: ExtractSettings) -> Extractor:
    from mishon.features.efficientnet import EfficientNetLite0Extractor

    if spec.model is not None:
        raise MishonError(
            "efficientnet-lite0 uses its packaged ImageNet weights; drop the model option"
        )
    return EfficientNetLite0Extractor(
        units=spec.units, frame_size=run.visual_frame_size, device=run.device
    )


def _vit(spec: ExtractorSettings, run: ExtractSettings) -> Extractor:
    from mishon.features.hf import HFVisionExtractor

    return HFVisionExtractor(spec.model, spec.units, run.allow_download, run.device)


def _logmel(spec: ExtractorSettings, run: ExtractSettings) -> Extractor:
    from mishon.features.logmel import LogMelExtractor

    if spec.model is not None:
        raise MishonError("logmel has no weights; drop the model option")
    return LogMelExtractor(units=spec.units)


def _sound(spec: ExtractorSettings, run: ExtractSettings) -> Extractor:
    from mishon.features.sound import SoundIdentityExtractor

    if spec.model is not None:
        raise MishonError("sound hashes the sound's identity and has no weights; drop the model")
    return SoundIdentityExtractor()


def _wav2vec2(spec: ExtractorSettings, run: ExtractSettings) -> Extractor:
    from mishon.features.hf import HFAudioExtractor

    return HFAudioExtractor(spec.model, spec.units, run.allow_download, run.device)


def _charngram(spec: ExtractorSettings, run: ExtractSettings) -> Extractor:
    from mishon.features.charngram import CharNgramExtractor

    if spec.model is not None:
        raise MishonError("charngram hashes character n-grams and has no weights; drop the model")
    return CharNgramExtractor(units=spec.units)


def _text(name: str) -> Factory:
    def build(spec: ExtractorSettings, run: ExtractSettings) -> Extractor:
        from mishon.features.hf import HFTextExtractor

        return HFTextExtractor(spec.model, spec.units, run.allow_download, run.device, name=name)

    return build


EXTRACTORS: dict[str, tuple[Modality, Factory]] = {
    "efficientnet-lite0": (Modality.VISUAL, _efficientnet),
    "vit": (Modality.VISUAL, _vit),
    "logmel": (Modality.ACOUSTIC, _logmel),
    "wav2vec2": (Modality.ACOUSTIC, _wav2vec2),
    "sound": (Modality.ACOUSTIC, _sound),
    "minilm": (Modality.TEXTUAL, _text("minilm")),
    "bert": (Modality.TEXTUAL, _text("bert")),
    "charngram": (Modality.TEXTUAL, _charngram),
}


OFFLINE = {
    "efficientnet-lite0",
    "logmel",
    "minilm",
    "sound",
    "charngram",
}  # no weights option to pass


def extractor_of_store(dataset: Path, modality: str, device: str = "cpu") -> Extractor:
    """The extractor, unit count and weights that made `dataset`'s `modality` feature store,
    so that new inputs (a new post, a hashtag's name) get units comparable with its posts'."""
    manifest = read_store_manifest(modality_dir(dataset, modality))
    if manifest is None:
        raise MishonError(f"{dataset} has no {modality} feature store")
    name = manifest["extractor"]
    if name == "imported":
        raise MishonError(
            f"the {modality} features of {dataset} were imported vectors: a new post's "
            "features must be given, not extracted"
        )
    model = None if name in OFFLINE else manifest["model_id"]
    spec = ExtractorSettings(name=name, model=model, units=manifest["units"])
    sized = re.search(r" at (\d+) px$", str(manifest["model_id"]))
    run = ExtractSettings(device=device, visual_frame_size=int(sized[1]) if sized else 224)
    return create_extractor(Modality(modality), spec, run)


FIELD_OF_EXTRACTOR = {"sound": "sound"}  # extractors that read a field other than the default


def field_of(name: str, modality: Modality) -> str:
    """The post field the extractor called `name` encodes: "video" (frames or the audio
    track) for visual and acoustic ones, "caption" for textual ones, unless FIELD_OF_EXTRACTOR
    names another (the `sound` extractor reads "sound")."""
    return FIELD_OF_EXTRACTOR.get(name, "caption" if modality == Modality.TEXTUAL else "video")


def input_field(extractor: Extractor, modality: Modality) -> str:
    """The post field a built extractor encodes (see field_of)."""
    return field_of(extractor.name, modality)


def names_for(modality: Modality) -> list[str]:
    """Registered extractor names of a modality."""
    return [name for name, (m, _) in EXTRACTORS.items() if m == modality]


def create_extractor(
    modality: Modality, spec: ExtractorSettings, run: ExtractSettings
) -> Extractor:
    """Build the extractor `spec.name` for `modality`; raise MishonError on a wrong name."""
    if spec.name not in EXTRACTORS:
        raise MishonError(
            f"unknown {modality} extractor {spec.name!r}; "
            f"choose one of {names_for(modality)} or none"
        )
    declared, factory = EXTRACTORS[spec.name]
    if declared != modality:
        raise MishonError(f"{spec.name!r} is a {declared} extractor, not {modality}")
    # `auto` (and a checked cuda:N) becomes the concrete device the extractors are placed on
    placed = run.model_copy(update={"device": str(resolve_device(run.device, "extract.device"))})
    return factory(spec, placed)
