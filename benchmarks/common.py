"""Shared benchmark plumbing: machine info, medians, and writing a section of BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def machine_info() -> str:
    """One line: CPU model, cores, Python, onnxruntime and (if present) torch versions."""
    cpu = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        match = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        cpu = match.group(1).strip() if match else cpu
    import onnxruntime

    parts = [
        cpu,
        f"{os.cpu_count()} cores",
        f"Python {platform.python_version()}",
        f"onnxruntime {onnxruntime.__version__}",
    ]
    try:
        import torch

        parts.append(f"torch {torch.__version__}")
    except ImportError:
        pass
    return ", ".join(parts)


def interleaved_medians(
    fns: dict[str, Callable[[], object]],
    runs: int,
    warmup: int = 5,
    clock: Callable[[], float] = time.perf_counter,
    block: int = 5,
    settle: float = 0.3,
) -> dict[str, float]:
    """Median ms of each callable over ``runs`` calls, taken in blocks of ``block`` consecutive
    calls that alternate between the callables: alternating blocks spread machine drift over all
    of them. Before each block the machine settles for ``settle`` seconds and one untimed call
    is made: worker threads of the previous runtime keep spinning after their run (OpenMP's
    block time is 200 ms), and without the pause they stole the cores of the next one
    (alternating single calls inflated onnxruntime times about 2x here).

    ``clock`` is wall time by default; ``time.process_time`` gives CPU time, which a loaded
    machine distorts less."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    while any(len(v) < runs for v in samples.values()):
        for name, fn in fns.items():
            time.sleep(settle)
            fn()
            for _ in range(min(block, runs - len(samples[name]))):
                start = clock()
                fn()
                samples[name].append((clock() - start) * 1e3)
    return {name: statistics.median(v) for name, v in samples.items()}


def write_section(name: str, body: str, path: Path = ROOT / "BENCHMARKS.md") -> None:
    """Replace (or append) the section between ``<!-- bench:NAME -->`` markers."""
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
