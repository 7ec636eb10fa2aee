"""Decoding what the extractors need from a video file with PyAV.

- `sample_frames`: L frames at evenly spaced times over the clip, as RGB, with rotation metadata
  applied, resized (shorter side) and centre-cropped to a square. Times come from frame
  timestamps, so variable frame rates are handled. Long clips are read by seeking to each target
  time instead of decoding everything; short ones are decoded in one pass. A clip with fewer
  frames than L gives each frame once (the caller masks the rest).
- `read_audio`: the first `max_seconds` of the sound track, mixed down to mono and resampled,
  as float32; None when the file has no audio stream.
Broken or truncated files raise MediaError with FFmpeg's reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

# Above this many seconds, seeking to each sampled time beats decoding every frame.
SEEK_THRESHOLD_S = 20.0


# Frames are decoded whole before they are scaled down: an 8192 x 8192 clip of 200 KB took
# about 1.1 GB of memory. 4096 x 4096 covers 4K video in either orientation.
MAX_FRAME_PIXELS = 4096 * 4096


class MediaError(Exception):
    """A media file that cannot be decoded; the message says why."""


@dataclass(frozen=True)
class ClipInfo:
    """What a file holds: duration in seconds (0 if unknown) and whether it has sound."""

    duration: float
    has_video: bool
    has_audio: bool


def probe(path: Path) -> ClipInfo:
    """Streams and duration of a media file."""
    try:
        with av.open(str(path)) as container:
            duration = _duration(container)
            return ClipInfo(duration, bool(container.streams.video), bool(container.streams.audio))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(f"cannot open {path.name}: {exc}") from None


def _duration(container: av.container.InputContainer) -> float:
    """Seconds of video: the video stream's own duration where known, else the container's."""
    stream = container.streams.video[0] if container.streams.video else None
    if stream is not None and stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return 0.0


def _to_square_rgb(frame: av.VideoFrame, size: int) -> np.ndarray:
    """RGB uint8 [size, size, 3]: rotated upright, shorter side scaled to `size`, centre crop."""
    width, height = frame.width, frame.height
    rotation = int(getattr(frame, "rotation", 0) or 0) % 360
    # After a quarter turn the displayed width is the stored height.
    shown_w, shown_h = (height, width) if rotation in (90, 270) else (width, height)
    scale = size / min(shown_w, shown_h)
    new_w = max(size, round(shown_w * scale))
    new_h = max(size, round(shown_h * scale))
    stored_w, stored_h = (new_h, new_w) if rotation in (90, 270) else (new_w, new_h)
    image = frame.reformat(width=stored_w, height=stored_h, format="rgb24").to_ndarray()
    if rotation:
        # FFmpeg's rotation is counter-clockwise in degrees; np.rot90 turns counter-clockwise.
        image = np.rot90(image, k=rotation // 90)
    top = (image.shape[0] - size) // 2
    left = (image.shape[1] - size) // 2
    return np.ascontiguousarray(image[top : top + size, left : left + size])


def sample_frames(path: Path, count: int, size: int) -> np.ndarray:
    """Up to `count` frames [n, size, size, 3] uint8, evenly spaced in time; n=0 if no video."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return np.zeros((0, size, size, 3), dtype=np.uint8)
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            if width * height > MAX_FRAME_PIXELS:
                raise MediaError(
                    f"cannot decode video of {path.name}: its {width} x {height} frames are "
                    f"larger than the {MAX_FRAME_PIXELS:,} pixels accepted"
                )
            stream.thread_type = "AUTO"
            duration = _duration(container)
            if duration > SEEK_THRESHOLD_S:
                frames = _frames_by_seeking(container, stream, duration, count)
            else:
                frames = _frames_in_one_pass(container, stream, count)
            return (
                np.stack([_to_square_rgb(f, size) for f in frames])
                if frames
                else np.zeros((0, size, size, 3), dtype=np.uint8)
            )
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(f"cannot decode video of {path.name}: {exc}") from None


def _targets(duration: float, count: int) -> np.ndarray:
    return (np.arange(count) + 0.5) / count * duration


def _frames_in_one_pass(
    container: av.container.InputContainer, stream: av.VideoStream, count: int
) -> list[av.VideoFrame]:
    decoded = list(container.decode(stream))
    if len(decoded) <= count:
        return decoded
    # Timestamps, not indices: with a variable frame rate, frames are not evenly spaced.
    times = np.array([f.time if f.time is not None else np.nan for f in decoded], dtype=float)
    if np.isnan(times).any():
        times = np.arange(len(decoded), dtype=float)
    # The clip spans from the first frame to the end of the last one (one typical gap).
    start = float(times[0])
    span = float(times[-1] - start + np.median(np.diff(times)))
    chosen: list[int] = []
    for target in _targets(span, count) + start:
        index = min(int(np.searchsorted(times, target)), len(decoded) - 1)
        if index > 0 and abs(times[index - 1] - target) < abs(times[index] - target):
            index -= 1  # the nearest frame in time
        if chosen and index <= chosen[-1]:
            index = chosen[-1] + 1  # never the same frame twice
        if index >= len(decoded):
            break
        chosen.append(index)
    return [decoded[i] for i in chosen]


def _frames_by_seeking(
    container: av.container.InputContainer, stream: av.VideoStream, duration: float, count: int
) -> list[av.VideoFrame]:
    frames: list[av.VideoFrame] = []
    last_time = -1.0
    for target in _targets(duration, count):
        container.seek(int(target / stream.time_base), stream=stream, backward=True)
        picked = None
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            picked = frame
            if frame.time >= target:
                break
        if picked is not None and picked.time > last_time:
            frames.append(picked)
            last_time = picked.time
    return frames


def read_audio(
    path: Path, sample_rate: int = 16000, max_seconds: float = 60.0
) -> np.ndarray | None:
    """Mono float32 samples of the first `max_seconds`, or None when there is no audio stream."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                return None
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            limit = int(max_seconds * sample_rate)
            chunks: list[np.ndarray] = []
            total = 0
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1)
                    chunks.append(chunk)
                    total += len(chunk)
                if total >= limit:
                    break
            else:
                for out in resampler.resample(None):
                    chunks.append(out.to_ndarray().reshape(-1))
            samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
            return samples[:limit].astype(np.float32, copy=False)
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(f"cannot decode audio of {path.name}: {exc}") from None
