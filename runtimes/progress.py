"""A one-line progress bar on stderr for files and folders (no dependency beyond the stdlib)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """``[#####.....] 120/400 frames 31.2 fps ETA 9 s``, redrawn at most 5 times a second."""

    def __init__(self, total: int | None, stream: TextIO = sys.stderr, width: int = 30):
        self.total, self.stream, self.width = total, stream, width
        self.enabled = bool(total) and stream.isatty()
        self.done = 0
        self._start = time.time()
        self._drawn = 0.0

    def update(self, done: int, fps: float) -> None:
        self.done = done
        now = time.time()
        if not self.enabled or (now - self._drawn < 0.2 and done < (self.total or 0)):
            return
        self._drawn = now
        total = self.total or 1
        filled = int(self.width * min(done / total, 1.0))
        eta = (total - done) / fps if fps > 0 else 0.0
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r[{bar}] {done}/{total} frames {fps:5.1f} fps ETA {eta:4.0f} s")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
