"""A quick readability check for a video file: it opens, has a video stream and one frame."""

from __future__ import annotations

from pathlib import Path

import av


def probe_video(path: Path) -> str | None:
    """None if `path` decodes (a video stream with at least one frame), else the reason."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return "no video stream"
            for _ in container.decode(video=0):
                return None
            return "video stream has no decodable frame"
    except (av.FFmpegError, OSError, ValueError) as exc:
        return f"cannot decode: {exc}"
