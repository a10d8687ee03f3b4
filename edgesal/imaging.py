"""Frame preparation and heat-map overlays for the workstation side (demo, evaluation)."""

from __future__ import annotations

import cv2
import numpy as np

from edgesal.metadata import Preprocess


def center_crop(rgb: np.ndarray, pre: Preprocess) -> np.ndarray:
    """Resize (shorter side to ``resize_shorter``, or straight to ``size``) and center-crop."""
    height, width = pre.size
    if pre.resize_shorter:
        scale = pre.resize_shorter / min(rgb.shape[:2])
        resized = cv2.resize(
            rgb,
            (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)),
            interpolation=cv2.INTER_LINEAR,
        )
    else:
        resized = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)
    top = (resized.shape[0] - height) // 2
    left = (resized.shape[1] - width) // 2
    return np.ascontiguousarray(resized[top : top + height, left : left + width])


def to_input(crop: np.ndarray, pre: Preprocess) -> np.ndarray:
    """One model input [1, ...] from an RGB uint8 crop, per ``pre`` (layout, normalization)."""
    image = crop if pre.color.upper() == "RGB" else crop[..., ::-1]
    if pre.in_graph:
        return image[None].astype(np.uint8)
    x = (image.astype(np.float32) / pre.pixel_scale - np.float32(pre.mean)) / np.float32(pre.std)
    if pre.layout.upper() == "NCHW":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x[None], dtype=np.float32)


def overlay(crop: np.ndarray, saliency: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """BGR image: the crop blended with the JET-coloured map (map in [0, 1], resized to fit)."""
    heat = np.clip(saliency, 0.0, 1.0)
    if heat.shape != crop.shape[:2]:
        heat = cv2.resize(heat, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_LINEAR)
    coloured = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
    bgr = cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)
    return cv2.addWeighted(bgr, 1.0 - alpha, coloured, alpha, 0.0)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)
