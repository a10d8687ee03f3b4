"""Temporal smoothing of saliency maps: m_t = a * m_{t-1} + (1 - a) * s_t, reset on a scene cut.

Consecutive frames of a stream should get coherent maps; an exponential moving average removes
frame-to-frame flicker. Averaging across a scene cut (or across a change of the explained class,
or of the method) would blend unrelated maps, so the average restarts there. A cut is detected as
a mean absolute difference above ``cut_threshold`` between 32x32 grey thumbnails of consecutive
frames (0..255 scale).
"""

from __future__ import annotations

import cv2
import numpy as np


def thumbnail(frame: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    return cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)


class MapSmoother:
    """EMA of maps with resets; ``alpha`` 0 disables smoothing (each map as computed)."""

    def __init__(self, alpha: float = 0.6, cut_threshold: float = 30.0):
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"--smooth {alpha}: must be in [0, 1)")
        self.alpha, self.cut_threshold = alpha, cut_threshold
        self._map: np.ndarray | None = None
        self._key: tuple | None = None
        self._thumb: np.ndarray | None = None
        self.cuts = 0

    def scene_cut(self, frame: np.ndarray) -> bool:
        """Whether ``frame`` starts a new scene; remembers it for the next call."""
        thumb = thumbnail(frame)
        previous, self._thumb = self._thumb, thumb
        cut = previous is not None and float(np.abs(thumb - previous).mean()) > self.cut_threshold
        self.cuts += cut
        return cut

    def update(self, saliency: np.ndarray, key: tuple, cut: bool) -> np.ndarray:
        """The smoothed map; ``key`` (class, method, shape) changing also restarts the average."""
        key = (*key, saliency.shape)
        if self.alpha == 0 or cut or self._map is None or key != self._key:
            self._map, self._key = saliency.astype(np.float32, copy=True), key
        else:
            self._map = self.alpha * self._map + (1.0 - self.alpha) * saliency
        return self._map
