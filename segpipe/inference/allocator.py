"""Give memory that glibc keeps after ``free`` back to the system while streaming.

glibc serves large allocations with ``mmap`` and unmaps them when freed, but it raises that
threshold dynamically (up to 32 MiB) after such frees; from then on arrays of a few MiB to tens
of MiB come from its heaps, which keep their pages after ``free``. Streaming prediction
allocates and frees arrays of that size for every batch and every tile it writes, from several
threads, so the process grows by a few hundred MiB over the memory it actually uses.
``malloc_trim(0)`` after each band of rows is handed out returns those pages (for bands of
64 MiB or more; below that what glibc keeps is small and the call costs more). Measured on a
96x1024x1024 volume (benchmarks/inference.py's network): peak RSS 1322 MiB without, 1226 MiB
with it, at the same speed; fixing the mmap threshold at 1 MiB instead gave 1090 MiB but
nearly doubled the system time (every large array freshly mapped and zeroed). Elsewhere than
glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys


@functools.cache
def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def release_free_memory() -> bool:
    """Return glibc's free heap pages to the system; ``True`` if any were released."""
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False
