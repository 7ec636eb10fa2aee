"""Write a video clip (H.264 in MP4, optional AAC mono sound track) from arrays."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def write_clip(
    path: Path,
    frames: np.ndarray,
    fps: int,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    crf: int = 28,
) -> None:
    """Encode `frames` (uint8 [T, H, W, 3], H and W even) and optional mono `audio` (float32 in
    [-1, 1]) into an MP4 file at `path`. Output is deterministic for the same input."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    _, height, width, _ = frames.shape
    if height % 2 or width % 2:
        raise ValueError(f"frame size must be even, got {width}x{height}")
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "ultrafast", "crf": str(crf)}
        video.codec_context.thread_count = 1  # one process per clip; keeps output deterministic
        sound = None
        if audio is not None:
            sound = container.add_stream("aac", rate=sample_rate)
            sound.layout = "mono"
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if sound is not None and audio is not None:
            samples = np.clip(audio, -1.0, 1.0).astype(np.float32)
            chunk = sound.codec_context.frame_size or 1024
            for start in range(0, len(samples), chunk):
                piece = samples[start : start + chunk]
                heard = av.AudioFrame.from_ndarray(piece[None, :], format="fltp", layout="mono")
                heard.sample_rate = sample_rate
                heard.pts = start
                container.mux(sound.encode(heard))
            container.mux(sound.encode(None))
