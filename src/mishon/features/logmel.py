"""Acoustic extractor `logmel`: log-mel band statistics per time window (no learned weights).

The sound track (16 kHz mono) is cut into 25 ms frames every 10 ms; each frame's power
spectrum is pooled by a mel filterbank (HTK mel scale) and log-compressed. The frames are split
into L consecutive windows of equal length, and each window is described by the mean and the
standard deviation of every band: 2 x n_mels values per window.
"""

from __future__ import annotations

import numpy as np

from mishon.features.base import Modality, empty_batch


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, fmin: float = 20.0) -> np.ndarray:
    """Triangular filters [n_mels, n_fft // 2 + 1], each summing to one."""
    fmax = sample_rate / 2
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    bins = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    bank = np.zeros((n_mels, len(bins)))
    for m in range(n_mels):
        low, centre, high = edges[m], edges[m + 1], edges[m + 2]
        rising = (bins - low) / max(centre - low, 1e-9)
        falling = (high - bins) / max(high - centre, 1e-9)
        bank[m] = np.clip(np.minimum(rising, falling), 0.0, None)
    sums = bank.sum(axis=1, keepdims=True)
    return bank / np.where(sums > 0, sums, 1.0)


def log_mel_frames(
    audio: np.ndarray, sample_rate: int, n_mels: int, window_s: float = 0.025, hop_s: float = 0.010
) -> np.ndarray:
    """Log-mel energies [frames, n_mels]; empty when the audio is shorter than one window."""
    window = round(window_s * sample_rate)
    hop = round(hop_s * sample_rate)
    if len(audio) < window:
        return np.zeros((0, n_mels), dtype=np.float32)
    count = 1 + (len(audio) - window) // hop
    index = np.arange(window)[None, :] + hop * np.arange(count)[:, None]
    frames = audio[index] * np.hanning(window)[None, :]
    n_fft = 1 << (window - 1).bit_length()
    power = np.abs(np.fft.rfft(frames, n=n_fft, axis=1)) ** 2
    bank = mel_filterbank(n_mels, n_fft, sample_rate)
    return np.log(power @ bank.T + 1e-10).astype(np.float32)


class LogMelExtractor:
    """L windows x (mean, std) of n_mels log-mel bands."""

    name = "logmel"
    modality = Modality.ACOUSTIC
    model_id = "logmel (no weights)"

    def __init__(self, units: int = 8, n_mels: int = 64, sample_rate: int = 16000) -> None:
        self.units = units
        self.n_mels = n_mels
        self.sample_rate = sample_rate
        self.dim = 2 * n_mels
        self.model_id = f"logmel (n_mels={n_mels}, 25 ms / 10 ms, no weights)"

    def encode(self, inputs: list[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
        values, mask = empty_batch(len(inputs), self.units, self.dim)
        for row, audio in enumerate(inputs):
            if audio is None:
                continue
            energies = log_mel_frames(audio, self.sample_rate, self.n_mels)
            if len(energies) == 0:
                continue
            # Fewer frames than windows (a very short clip): one frame per window, rest masked.
            for unit, window in enumerate(np.array_split(energies, min(self.units, len(energies)))):
                values[row, unit, : self.n_mels] = window.mean(axis=0)
                values[row, unit, self.n_mels :] = window.std(axis=0)
                mask[row, unit] = True
        return values, mask
