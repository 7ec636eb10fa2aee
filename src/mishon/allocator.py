"""Freed memory kept for reuse, so the extractors' large tensors cost no page faults.

glibc hands out an allocation above its mmap threshold (32 MB at most, adjusted as it goes)
as fresh pages from the kernel and gives them back when freed, and trims the top of its heaps
past 128 KB. A forward pass of EfficientNet-Lite0 over 8 frames at 224 px allocates and frees
tens of such tensors (one layer's output is 8 x 96 x 112 x 112 floats, 38 MB), so every clip
had the kernel map and zero every page again. Kept, the visual extractor takes 64 ms a clip
instead of 98-149 with two threads (`benchmarks/recommend.py --end-to-end`), and a service
process's answers report 118-122 ms instead of 177-189 with one (docs/benchmarks.md); the
peak memory grew by 17 MB. PyTorch's guides reach the same with jemalloc or tcmalloc
preloaded; this needs nothing installed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
# blocks up to this size come from the heaps: above every tensor of the extractors (38 MB),
# below the known posts' arrays at millions of posts, which go back to the kernel when freed
HEAP_BLOCK_BYTES = 64 << 20
# free memory at the top of a heap kept up to this size: above one extraction's working set
# (about 400 MB with 8 frames at 224 px); at 64 MB the gain was half, at 32 MB none
KEEP_FREE_BYTES = 1 << 30

logger = logging.getLogger("mishon.allocator")


def keep_freed_memory() -> bool:
    """Make this process's allocator serve blocks up to `HEAP_BLOCK_BYTES` from its heaps and
    keep up to `KEEP_FREE_BYTES` freed there for the next allocations; False where the C
    library is not glibc (the call is then a no-op)."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        logger.debug("no mallopt in this C library: freed memory is returned as usual")
        return False
    applied = bool(mallopt(M_MMAP_THRESHOLD, HEAP_BLOCK_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, KEEP_FREE_BYTES)
    )
    logger.debug("allocator keeps freed memory: %s", applied)
    return applied
