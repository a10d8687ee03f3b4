"""Table sources for series and tabular models: ``--source log.csv`` or ``rows.npy``.

A table is [rows, columns] of numbers: a sensor log (one row per time step, one column per
channel) for a series model, cut into windows of the model's T rows every ``stride`` rows; one
row per sample (one column per feature) for a tabular model. CSV is read with numpy (numbers
only; a first line that is not numeric is taken as a header and skipped), ``.npy`` with
``allow_pickle=False``; at most 256 MiB. Windows iterate as :class:`edgesal.runtimes.sources.Frame`
objects whose ``image`` is the [T, columns] block, like the audio sources' windows.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edgesal.runtimes.audio_sources import AudioSource, Windowing
from edgesal.runtimes.errors import SourceError

TABLE_SUFFIXES = (".csv", ".npy")
MAX_TABLE_BYTES = 256 << 20
DISPLAY_FPS = 10.0  # windows per second of a recorded video of a table


def is_table_spec(spec: str) -> bool:
    return spec.strip().lower().endswith(TABLE_SUFFIXES)


def read_numbers(path: Path, flag: str, what: str, limit: int = MAX_TABLE_BYTES) -> np.ndarray:
    """Finite float32 numbers of any rank from a ``.npy`` (no pickles) or ``.csv`` file (numbers
    only; a first line that is not numeric is a header, skipped), at most ``limit`` bytes; errors
    name ``flag`` and say the file is not ``what``."""
    if not path.is_file():
        raise SourceError(f"{flag} {path}: no such file")
    if path.stat().st_size > limit:
        raise SourceError(f"{flag} {path}: larger than {limit >> 20} MiB")
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise SourceError(f"{flag} {path}: expected a .npy or .csv file")
    try:
        data = np.load(path, allow_pickle=False) if suffix == ".npy" else _read_csv(path)
        data = np.asarray(data, np.float32)
    except (ValueError, TypeError) as exc:
        raise SourceError(f"{flag} {path}: not {what} ({exc})") from None
    if data.size == 0 or not np.isfinite(data).all():
        raise SourceError(f"{flag} {path}: expected {what}, finite and not empty")
    return data


def read_table(path: Path) -> np.ndarray:
    """[rows, columns] float32 of a CSV or ``.npy`` file (a 1-D array is one column)."""
    table = read_numbers(path, "--source", "a table of numbers")
    table = table[:, None] if table.ndim == 1 else table
    if table.ndim != 2:
        raise SourceError(f"--source {path}: expected [rows, columns], got {list(table.shape)}")
    return table


def _read_csv(path: Path) -> np.ndarray:
    with path.open(encoding="utf-8", errors="replace") as handle:
        first = handle.readline()
    try:
        [float(v) for v in first.split(",")]
        header = 0
    except ValueError:
        header = 1
    return np.loadtxt(path, delimiter=",", ndmin=2, skiprows=header, dtype=np.float64)


def open_table_source(
    spec: str, windowing: Windowing, columns: int, loop: bool = False
) -> AudioSource:
    """Windows of ``windowing.window`` rows every ``windowing.stride`` rows of the table."""
    if not is_table_spec(spec):
        raise SourceError(f"--source {spec}: a series or tabular model reads a .csv or .npy table")
    table = read_table(Path(spec.strip()))
    if table.shape[1] != columns:
        raise SourceError(
            f"--source {spec}: {table.shape[1]} columns, the model reads {columns} per row"
        )
    if table.shape[0] < windowing.window:
        raise SourceError(
            f"--source {spec}: {table.shape[0]} rows, one window needs {windowing.window}"
        )
    starts = list(range(0, table.shape[0] - windowing.window + 1, windowing.stride))
    total = None if loop else len(starts)
    return AudioSource(spec, _windows(table, starts, windowing.window, loop), False, total,
                       DISPLAY_FPS)  # fmt: skip


def _windows(table: np.ndarray, starts: list[int], size: int, loop: bool) -> Iterator[np.ndarray]:
    while True:
        for start in starts:
            yield table[start : start + size]
        if not loop:
            return
