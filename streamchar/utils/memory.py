"""The C heap of a process that runs for hours."""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameters (malloc.h)
M_ARENA_MAX = -8
MMAP_THRESHOLD = 4 << 20  # blocks this large go to the OS and back when freed
ARENAS = 2


def steady_heap() -> bool:
    """Keep glibc's heap from creeping up over a long run. By default each freed large block
    raises the size under which blocks stay in the heap, so a server's per-chunk buffers pile
    up there fragmented; and each thread may get an arena of its own, so chunks made in one
    worker and freed in another leave holes in many heaps. A fixed threshold and two arenas
    keep resident memory where its work needs it. False where the C library is not glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_ARENA_MAX, ARENAS))
