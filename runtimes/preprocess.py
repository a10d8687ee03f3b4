"""Frame -> model input, and model-grid map -> frame coordinates.

A frame (BGR uint8, as OpenCV delivers it) is cut to the region the model sees, resized to the
input grid, colour-converted and normalised as ``(pixel / pixel_scale - mean) / std``. Cutting the
region before resizing equals "resize shorter side, centre crop" and costs less.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edgesal.runtimes.contract import Preprocess


@dataclass(frozen=True)
class Region:
    """The part of the frame (x, y, width, height in pixels) that the model input covers."""

    x: int
    y: int
    w: int
    h: int


def model_region(frame_hw: tuple[int, int], pre: Preprocess) -> Region:
    """Frame region behind the input grid: the whole frame (``resize_shorter`` 0), else the centre
    crop of size ``size * shorter / resize_shorter``."""
    height, width = frame_hw
    if pre.resize_shorter <= 0:
        return Region(0, 0, width, height)
    scale = min(height, width) / pre.resize_shorter
    crop_h = min(height, round(pre.size[0] * scale))
    crop_w = min(width, round(pre.size[1] * scale))
    return Region((width - crop_w) // 2, (height - crop_h) // 2, crop_w, crop_h)


class Preprocessor:
    """Callable: BGR frame -> (input tensor with batch axis, region); constants precomputed."""

    def __init__(self, pre: Preprocess):
        self.pre = pre
        scale = np.float32(1.0 / pre.pixel_scale)
        std = np.asarray(pre.std, np.float32)
        mean = np.asarray(pre.mean, np.float32)
        self._mul = np.broadcast_to(scale / std, (3,)).astype(np.float32)
        self._add = np.broadcast_to(-mean / std, (3,)).astype(np.float32)

    def crop(self, frame: np.ndarray) -> tuple[np.ndarray, Region]:
        """The region resized to the input grid, in the model's colour order (uint8 HWC)."""
        region = model_region(frame.shape[:2], self.pre)
        cut = frame[region.y : region.y + region.h, region.x : region.x + region.w]
        height, width = self.pre.size
        shrinking = cut.shape[0] > height and cut.shape[1] > width
        resized = cv2.resize(
            cut, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        )
        if resized.ndim == 2:
            resized = cv2.cvtColor(resized, cv2.COLOR_GRAY2BGR)
        if self.pre.color.upper() == "RGB":
            resized = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
        return resized, region

    def tensor(self, crop: np.ndarray) -> np.ndarray:
        """uint8 HWC crop -> the input tensor (batch of one)."""
        if self.pre.in_graph:
            return crop[None] if self.pre.layout == "NHWC" else crop.transpose(2, 0, 1)[None]
        x = self._planes(crop) if self.pre.layout == "NCHW" else self._interleaved(crop)
        return x if self.pre.dtype == "float32" else x.astype(np.dtype(self.pre.dtype))

    def _planes(self, crop: np.ndarray) -> np.ndarray:
        """NCHW float32, each channel scaled and shifted by OpenCV in one pass straight into its
        plane (numpy's ``astype * mul + add`` then transpose costs 20x as much per frame)."""
        height, width, channels = crop.shape
        out = np.empty((1, channels, height, width), np.float32)
        for c, plane in enumerate(cv2.split(crop)):
            scale, shift = float(self._mul[c]), float(self._add[c])
            cv2.addWeighted(plane, scale, plane, 0.0, shift, dst=out[0, c], dtype=cv2.CV_32F)
        return out

    def _interleaved(self, crop: np.ndarray) -> np.ndarray:
        """NHWC float32 by OpenCV's per-channel multiply and add (one temporary, not three)."""
        x = cv2.multiply(crop, (*self._mul.tolist(), 0.0), dtype=cv2.CV_32F)
        cv2.add(x, (*self._add.tolist(), 0.0), dst=x)
        return x[None]

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, Region]:
        crop, region = self.crop(frame)
        return self.tensor(crop), crop, region


def map_to_frame(saliency: np.ndarray, region: Region, frame_hw: tuple[int, int]) -> np.ndarray:
    """The [H, W] input-grid map resized onto ``region`` of a zero frame-sized map (float32)."""
    full = np.zeros(frame_hw, np.float32)
    resized = cv2.resize(
        saliency.astype(np.float32), (region.w, region.h), interpolation=cv2.INTER_LINEAR
    )
    full[region.y : region.y + region.h, region.x : region.x + region.w] = resized
    return full
