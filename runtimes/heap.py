"""C-heap hygiene for small devices: how much memory the process keeps resident, not how fast it is.

glibc's malloc gives each thread that allocates its own arena (up to 8 per core) and keeps freed
memory in the arena that freed it. A runtime that loads a model on one thread and then runs
capture, inference and rendering on others ends up holding freed pages it never reuses. Both
helpers are no-ops where the C library lacks them (musl, macOS).
"""

from __future__ import annotations

import ctypes

_M_ARENA_MAX = -8  # mallopt parameter number in glibc's malloc.h


def _libc():
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def return_free_heap() -> None:
    """Hand pages that the heap holds but no longer uses back to the OS (``malloc_trim``).

    Loading a model parses the file and folds constants: for MobileNetV2 about 20 MB is freed on
    the loading thread and would otherwise stay resident for the life of the process.
    """
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def limit_malloc_arenas(arenas: int = 2) -> None:
    """At most ``arenas`` malloc arenas for the whole process (``mallopt(M_ARENA_MAX)``).

    Call it before the worker threads start. The stream's large buffers (frames, tensors) are few
    per frame, so sharing arenas costs no measurable speed, while one arena per thread kept
    3-10 MB more resident in the MobileNetV2 stream.
    """
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(_M_ARENA_MAX, max(1, arenas))
