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


class RecordingLibc:
    """A C library stand-in that records the calls, with only the functions it is given."""

    def __init__(self, *names: str):
        self.calls: list[tuple] = []
        for name in names:
            setattr(self, name, lambda *args, name=name: self.calls.append((name, *args)))


def test_helpers_call_glibc_with_the_documented_arguments(monkeypatch):
    libc = RecordingLibc("malloc_trim", "mallopt")
    monkeypatch.setattr(heap, "_libc", lambda: libc)
    heap.return_free_heap()
    heap.limit_malloc_arenas(2)
    heap.limit_malloc_arenas(0)  # at least one arena
    assert libc.calls == [("malloc_trim", 0), ("mallopt", -8, 2), ("mallopt", -8, 1)]


@pytest.mark.parametrize("names", [(), ("mallopt",), ("malloc_trim",)])
def test_helpers_skip_what_the_c_library_lacks(monkeypatch, names):
    libc = RecordingLibc(*names)
    monkeypatch.setattr(heap, "_libc", lambda: libc)
    heap.return_free_heap()
    heap.limit_malloc_arenas(2)
    expected = {"malloc_trim": ("malloc_trim", 0), "mallopt": ("mallopt", -8, 2)}
    assert libc.calls == [expected[n] for n in ("malloc_trim", "mallopt") if n in names]


def test_helpers_are_no_ops_without_a_c_library(monkeypatch):
    monkeypatch.setattr(heap, "_libc", lambda: None)
    assert heap.return_free_heap() is None and heap.limit_malloc_arenas(2) is None
