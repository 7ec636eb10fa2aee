"""Freed memory kept for reuse (mishon/allocator.py): applied on glibc, a no-op elsewhere."""

from __future__ import annotations

import platform

import pytest

from mishon import allocator


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_glibc_keeps_freed_memory() -> None:
    assert allocator.keep_freed_memory() is True


def test_a_c_library_without_mallopt_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator.ctypes.util, "find_library", lambda name: None)
    assert allocator.keep_freed_memory() is False
