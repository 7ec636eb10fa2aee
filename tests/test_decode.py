from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mishon.data.synth import World
from mishon.media.decode import SEEK_THRESHOLD_S, MediaError, probe, read_audio, sample_frames

from .media_helpers import big_buck_bunny, gray_index, write_gray_clip


def test_big_buck_bunny_frames_and_sound() -> None:
    clip = big_buck_bunny()
    info = probe(clip)
    # 132 frames at 25 fps; the sound track runs 5.312 s
    assert info.has_video and info.has_audio and info.duration == pytest.approx(5.28, abs=0.001)
    frames = sample_frames(clip, 8, 64)
    assert frames.shape == (8, 64, 64, 3) and frames.dtype == np.uint8
    assert len({f.tobytes() for f in frames}) == 8  # eight different moments
    audio = read_audio(clip, 16000)
    assert audio is not None and audio.dtype == np.float32 and audio.ndim == 1
    # 5.3 s of 48 kHz 5.1 sound, mixed down to mono and resampled to 16 kHz
    assert len(audio) == pytest.approx(5.312 * 16000, rel=0.01)
    assert 0.05 < np.abs(audio).max() <= 1.0
    assert len(read_audio(clip, 16000, max_seconds=1.0)) == 16000


def test_frames_are_evenly_spaced_in_time(tmp_path: Path) -> None:
    clip = tmp_path / "even.mp4"
    write_gray_clip(clip, [k * 0.1 for k in range(30)])  # 10 fps, 3 s
    frames = sample_frames(clip, 5, 32)
    # targets at 0.3, 0.9, 1.5, 2.1, 2.7 s -> frames 3, 9, 15, 21, 27
    assert [gray_index(f) for f in frames] == [3, 9, 15, 21, 27]


def test_variable_frame_rate_uses_timestamps(tmp_path: Path) -> None:
    clip = tmp_path / "vfr.mp4"
    # 20 frames crowded into the first second, then 4 frames one second apart
    times = [k * 0.05 for k in range(20)] + [1.5, 2.5, 3.5, 4.5]
    write_gray_clip(clip, times)
    frames = sample_frames(clip, 4, 32)
    picked = [times[gray_index(f)] for f in frames]
    # an index-based sampler would pick mostly from the first second
    assert sum(t >= 1.5 for t in picked) >= 3


def test_long_clip_is_read_by_seeking(tmp_path: Path) -> None:
    clip = tmp_path / "long.mp4"
    duration = SEEK_THRESHOLD_S + 10
    write_gray_clip(clip, [k * 1.0 for k in range(int(duration))])
    frames = sample_frames(clip, 3, 32)
    targets = [(i + 0.5) / 3 * duration for i in range(3)]
    assert [gray_index(f) for f in frames] == [int(np.ceil(t)) for t in targets]


def test_short_clip_gives_each_frame_once(tmp_path: Path) -> None:
    clip = tmp_path / "short.mp4"
    write_gray_clip(clip, [k * 0.1 for k in range(5)])  # 0.5 s
    frames = sample_frames(clip, 8, 32)
    assert [gray_index(f) for f in frames] == [0, 1, 2, 3, 4]


def test_rotation_metadata_is_applied(tmp_path: Path) -> None:
    clip = tmp_path / "rotated.mp4"
    write_gray_clip(clip, [0.0, 0.1], size=(64, 32), rotation=90)
    frame = sample_frames(clip, 1, 32)[0]
    # stored 64 wide x 32 high with a white left half; turned a quarter counter-clockwise
    # the white half is at the bottom of the upright, centre-cropped frame
    assert frame[-4:].mean() > 200 and frame[:4].mean() < 60


def test_no_audio_stream_gives_none(tmp_path: Path) -> None:
    clip = tmp_path / "silent.mp4"
    write_gray_clip(clip, [0.0, 0.1])
    assert read_audio(clip) is None
    assert not probe(clip).has_audio


def test_broken_files_raise_media_error(tmp_path: Path, tiny_corpus: tuple[Path, World]) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00not a video at all" * 100)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes((tiny_corpus[0] / "media" / "p000000.mp4").read_bytes()[:2000])
    for broken in (garbage, truncated):
        with pytest.raises(MediaError, match=broken.name):
            sample_frames(broken, 4, 32)
    with pytest.raises(MediaError):
        read_audio(garbage)
