"""The latest overlay frame as JPEG for the web view (:mod:`edgesal.runtimes.server`), encoded
on a thread of its own and only while someone is watching."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np


class FrameBoard:
    """The latest overlay frame, JPEG-encoded only while someone is watching.

    ``publish`` (the pipeline's thread) only hands the newest overlay to an encoder thread; a
    frame not yet encoded when a newer one arrives is dropped. So JPEG work and every viewer,
    fast, slow or stalled, stay off the pipeline's thread (OpenCV releases the GIL to encode),
    and the encoder runs at most ``max_fps`` times a second, however fast the pipeline is.
    """

    def __init__(self, quality: int = 80, max_fps: float = 30.0):
        self.quality, self.max_fps = quality, max_fps
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # streams wait on it for a new JPEG
        self._fresh = threading.Condition(lock)  # the encoder waits on it for a new overlay
        self._pending: np.ndarray | None = None
        self._encoder: threading.Thread | None = None
        self._closed = False
        self._jpeg: bytes | None = None
        self._seq = 0
        self.viewers = 0
        self._last_request = 0.0

    def watch(self, change: int) -> None:
        with self._cond:
            self.viewers += change

    def wanted(self) -> bool:
        return self.viewers > 0 or time.time() - self._last_request < 5.0

    def publish(self, image: np.ndarray, force: bool = False) -> None:
        if self._closed or not (force or self.wanted()):
            return
        copy = image.copy()  # the pipeline may reuse its buffer before the encoder reads it
        with self._cond:
            self._pending = copy
            if self._encoder is None:
                self._encoder = threading.Thread(target=self._encode, name="jpeg", daemon=True)
                self._encoder.start()
            self._fresh.notify()

    def _encode(self) -> None:
        params = [cv2.IMWRITE_JPEG_QUALITY, self.quality]
        while (image := self._next_overlay()) is not None:
            start = time.monotonic()
            ok, jpeg = cv2.imencode(".jpg", image, params)
            if ok:
                with self._cond:
                    self._jpeg, self._seq = jpeg.tobytes(), self._seq + 1
                    self._cond.notify_all()
            time.sleep(max(0.0, start + 1 / self.max_fps - time.monotonic()))

    def _next_overlay(self) -> np.ndarray | None:
        """The newest overlay not yet encoded (waits for one); None once the board is closed."""
        with self._fresh:
            while self._pending is None and not self._closed:
                self._fresh.wait()
            image, self._pending = self._pending, None
            return None if self._closed else image

    def close(self) -> None:
        """Stop the encoder thread; later frames are not published."""
        with self._fresh:
            self._closed = True
            self._fresh.notify()
        if self._encoder is not None:
            self._encoder.join(5)

    def latest(self) -> bytes | None:
        self._last_request = time.time()
        return self._jpeg

    def wait_next(self, seq: int, timeout: float = 1.0) -> tuple[int, bytes | None]:
        with self._cond:
            self._cond.wait_for(lambda: self._seq != seq, timeout)
            return self._seq, self._jpeg
