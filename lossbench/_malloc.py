"""Keep freed memory for reuse (glibc): steadier and faster CPU evaluation.

Eager PyTorch allocates every activation afresh. glibc serves allocations above its mmap threshold
(128 KiB at start, raised only as the process frees such blocks) with fresh ``mmap`` pages, each of
which faults and is zeroed on first touch, and returns them on ``free``. A ResNet-56 forward over 500
images of 16x16 allocates 8 MB tensors, so its speed depended on the process's history: the same grid
point took 0.30 s or 0.43 s on the dev box (benchmarks/RESULTS.md). Serving blocks up to 32 MiB from
the heap and keeping up to 1 GiB of freed memory removes that.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 1 << 30


_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; True if applied, False where the C
    library is not glibc (nothing changes there)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def keep_freed_memory_once() -> bool:
    """:func:`keep_freed_memory` the first time a grid is evaluated in this process, so the library
    path is as fast as the command line whatever the entry point; ``LOSSBENCH_KEEP_FREED_MEMORY=0``
    leaves the allocator alone (e.g. in a host process with its own settings)."""
    import os

    global _applied
    if _applied is None:
        _applied = os.environ.get("LOSSBENCH_KEEP_FREED_MEMORY", "1") != "0" and keep_freed_memory()
    return _applied
