"""Rendering a synthetic post's clip: frames from its visual style, sound from its acoustic one.

Each clip has its own generator seeded by (corpus seed, post index), so clips can be rendered in
any order, in any process, and come out the same.
"""

from __future__ import annotations

import colorsys
import os
from pathlib import Path

import numpy as np

from mishon.config import SynthSettings
from mishon.data.synth.world import RenderSpec, TopicStyle
from mishon.media.encode import write_clip


def _rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, saturation, value)) * 255.0


def render_frames(style: TopicStyle, cfg: SynthSettings, rng: np.random.Generator) -> np.ndarray:
    """uint8 frames [T, S, S, 3]: a moving shape on a tinted background, with per-post jitter."""
    size, n_frames = cfg.frame_size, max(1, round(cfg.duration_s * cfg.fps))
    hue = style.hue + rng.normal(0.0, 0.02)
    background = _rgb(hue, 0.55, rng.uniform(0.3, 0.5))
    foreground = _rgb(hue + 0.5, 0.8, rng.uniform(0.8, 1.0))
    radius = size * rng.uniform(0.14, 0.24)
    angle = style.angle + rng.normal(0.0, 0.2)
    speed = style.speed * rng.uniform(0.8, 1.2) * size  # pixels per second
    start = rng.uniform(0.0, size, size=2)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    shading = (yy / size)[..., None] * 40.0  # vertical gradient, so frames are not flat
    frames = np.empty((n_frames, size, size, 3), dtype=np.uint8)
    for k in range(n_frames):
        t = k / cfg.fps
        cx = (start[0] + speed * np.cos(angle) * t) % size
        cy = (start[1] + speed * np.sin(angle) * t) % size
        dx, dy = xx - cx, yy - cy
        if style.shape == "disc":
            mask = dx * dx + dy * dy <= radius * radius
        elif style.shape == "square":
            mask = (np.abs(dx) <= radius) & (np.abs(dy) <= radius)
        elif style.shape == "diamond":
            mask = np.abs(dx) + np.abs(dy) <= radius * 1.3
        else:  # stripes moving across the whole frame
            mask = (
                (xx * np.cos(angle) + yy * np.sin(angle) - speed * t) // (radius * 0.7)
            ) % 2 == 0
        image = np.where(mask[..., None], foreground, background) + shading
        frames[k] = np.clip(image, 0, 255).astype(np.uint8)
    return frames


def _coloured_noise(colour: str, n: int, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(n)
    if colour == "white":
        noise = white
    elif colour == "pink":  # 1/f power: shape the spectrum by 1/sqrt(f)
        spectrum = np.fft.rfft(white)
        freqs = np.arange(len(spectrum), dtype=np.float64)
        freqs[0] = 1.0
        noise = np.fft.irfft(spectrum / np.sqrt(freqs), n)
    else:  # brown: integrated white noise, detrended
        noise = np.cumsum(white)
        noise -= np.linspace(noise[0], noise[-1], n)
    return noise / (np.abs(noise).max() + 1e-9)


def render_audio(style: TopicStyle, cfg: SynthSettings, rng: np.random.Generator) -> np.ndarray:
    """float32 mono [duration * rate]: a pulsed tone with a harmonic over coloured noise."""
    n = round(cfg.duration_s * cfg.sample_rate)
    t = np.arange(n) / cfg.sample_rate
    tone = style.tone_hz * rng.uniform(0.98, 1.02)
    pulse = style.pulse_hz * rng.uniform(0.9, 1.1)
    envelope = 0.3 + 0.7 * (np.sin(2 * np.pi * pulse * t + rng.uniform(0, 2 * np.pi)) > 0)
    voice = np.sin(2 * np.pi * tone * t) + 0.4 * np.sin(2 * np.pi * 2 * tone * t)
    signal = 0.45 * envelope * voice / 1.4 + rng.uniform(0.1, 0.3) * _coloured_noise(
        style.noise, n, rng
    )
    return (0.8 * signal / (np.abs(signal).max() + 1e-9)).astype(np.float32)


def render_post(spec: RenderSpec, cfg: SynthSettings, path: Path) -> None:
    """Render and encode one post's clip to `path` (written under a temporary name first)."""
    rng = np.random.default_rng([cfg.seed, spec.index])
    frames = render_frames(spec.visual, cfg, rng)
    audio = render_audio(spec.acoustic, cfg, rng) if spec.has_sound else None
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    write_clip(tmp, frames, cfg.fps, audio, cfg.sample_rate)
    os.replace(tmp, path)
