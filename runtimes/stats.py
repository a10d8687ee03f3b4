"""Running statistics of a stream: fps over a sliding window, latency percentiles, counters."""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np


class StreamStats:
    """Thread-safe: the output stage calls :meth:`frame_done`; the status page reads
    :meth:`snapshot`."""

    def __init__(self, window: float = 2.0, samples: int = 300):
        self.window = window
        self.started = time.time()
        self._lock = threading.Lock()
        self._done: deque[float] = deque()
        self._latency: deque[float] = deque(maxlen=samples)
        self._model: deque[float] = deque(maxlen=samples)
        self.counters = {"frames": 0, "maps": 0, "dropped": 0, "selfchecks": 0, "unfaithful": 0}
        self.last: deque[dict] = deque(maxlen=10)

    def count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + amount

    def frame_done(self, latency: float, model_seconds: float | None, summary: dict) -> None:
        now = time.time()
        with self._lock:
            self.counters["frames"] += 1
            self._done.append(now)
            while self._done and now - self._done[0] > self.window:
                self._done.popleft()
            self._latency.append(latency)
            if model_seconds is not None:
                self._model.append(model_seconds)
            self.last.appendleft(summary)

    def fps(self) -> float:
        with self._lock:
            if len(self._done) < 2:
                return 0.0
            span = self._done[-1] - self._done[0]
            return (len(self._done) - 1) / span if span > 0 else 0.0

    def snapshot(self) -> dict:
        fps = self.fps()
        with self._lock:
            return {
                "uptime_s": time.time() - self.started,
                "fps": fps,
                "latency_ms": _percentiles(self._latency),
                "model_ms": _percentiles(self._model),
                **dict(self.counters),
                "last": list(self.last),
            }


def _percentiles(values: deque[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None}
    data = np.asarray(values) * 1000.0
    return {"p50": float(np.percentile(data, 50)), "p95": float(np.percentile(data, 95))}
