"""edgesal.runtimes.heap: freed heap pages go back to the OS; both helpers are harmless without
glibc."""

from __future__ import annotations

import ctypes

import pytest

from edgesal.runtimes import heap


def _rss_kb() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1])


@pytest.mark.skipif(
    not hasattr(ctypes.CDLL(None), "malloc_trim"), reason="malloc_trim is glibc-only"
)
def test_return_free_heap_releases_freed_small_blocks():
    blocks = [bytearray(2048) for _ in range(40_000)]  # ~80 MB of heap, below mmap's threshold
    pin = bytearray(2048)  # allocated last: keeps the heap top in use, so free() cannot trim
    del blocks
    before = _rss_kb()
    heap.return_free_heap()
    assert before - _rss_kb() > 40_000
    del pin


def test_helpers_are_no_ops_without_the_glibc_calls(monkeypatch):
    monkeypatch.setattr(heap, "_libc", lambda: object())
    heap.return_free_heap()
    heap.limit_malloc_arenas(2)
    monkeypatch.setattr(heap, "_libc", lambda: None)
    heap.return_free_heap()
    heap.limit_malloc_arenas(2)
