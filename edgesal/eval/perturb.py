"""Deletion and insertion curves (Petsiuk et al. 2018, RISE) and their areas.

Deletion: starting from the image, pixels are replaced by a baseline in order of decreasing
saliency, ``steps`` equal steps; the class probability should fall fast (low AUC is good).
Insertion: starting from a canvas, the image's pixels are put back in the same order; the
probability should rise fast (high AUC is good). Each curve is ``steps + 1`` probabilities at the
fractions 0, 1/steps, ..., 1, all scored by the model's own forward pass as batches, and its AUC is
the trapezoidal area over [0, 1]. Images are [H, W, C] in the model input's units.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from edgesal.errors import InputError
from edgesal.eval.options import BASELINES

BLUR_KERNEL, BLUR_SIGMA = 11, 5.0  # RISE's blurred canvas

Predict = Callable[[np.ndarray], np.ndarray]  # [B, H, W, C] -> probabilities [B, classes]


def baseline(pixels: np.ndarray, kind: str) -> np.ndarray:
    """The image every pixel is replaced with: zeros, RISE's Gaussian blur (11x11, sigma 5) or
    the per-channel mean, in the input's units."""
    if kind == "zeros":
        return np.zeros_like(pixels)
    if kind == "mean":
        return np.broadcast_to(pixels.mean(axis=(0, 1), keepdims=True), pixels.shape).copy()
    if kind == "blur":
        k = (BLUR_KERNEL, BLUR_KERNEL)
        blurred = cv2.GaussianBlur(pixels, k, BLUR_SIGMA, borderType=cv2.BORDER_REFLECT)
        return blurred.reshape(pixels.shape)
    raise InputError(f"baseline '{kind}': choose one of {', '.join(BASELINES)}")


def order(saliency: np.ndarray) -> np.ndarray:
    """Flat pixel indices by decreasing saliency; ties keep raster order."""
    return np.argsort(-np.asarray(saliency, np.float64).reshape(-1), kind="stable")


def counts(pixels: int, steps: int) -> np.ndarray:
    """Pixels moved after step k = round(k * pixels / steps), k = 0..steps."""
    if steps < 1:
        raise InputError(f"--steps {steps}: a curve needs at least 1 step")
    return np.rint(np.arange(steps + 1) * pixels / steps).astype(np.int64)


def blends(start: np.ndarray, end: np.ndarray, ranking: np.ndarray, steps: int) -> np.ndarray:
    """[steps + 1, H, W, C]: image k takes its first ``counts[k]`` ranked pixels from ``end``,
    the rest from ``start``."""
    h, w, c = start.shape
    taken = np.zeros(h * w, np.int64)
    taken[ranking] = np.arange(h * w)  # position of each pixel in the ranking
    moved = taken[None, :] < counts(h * w, steps)[:, None]  # [steps + 1, H * W]
    mask = moved.reshape(steps + 1, h, w, 1)
    return np.where(mask, end[None], start[None]).astype(start.dtype, copy=False)


def curve(
    predict: Predict,
    start: np.ndarray,
    end: np.ndarray,
    saliency: np.ndarray,
    target: int,
    steps: int,
) -> np.ndarray:
    """Probabilities of class ``target`` along the blend from ``start`` to ``end``."""
    return predict(blends(start, end, order(saliency), steps))[:, target].astype(np.float64)


def deletion(predict: Predict, pixels, saliency, target: int, steps: int, kind: str) -> np.ndarray:
    """Deletion curve: the image, salient pixels first replaced by ``baseline(kind)``."""
    return curve(predict, pixels, baseline(pixels, kind), saliency, target, steps)


def insertion(predict: Predict, pixels, saliency, target: int, steps: int, kind: str) -> np.ndarray:
    """Insertion curve: ``baseline(kind)`` as canvas, salient pixels of the image first."""
    return curve(predict, baseline(pixels, kind), pixels, saliency, target, steps)


def auc(values: np.ndarray) -> float:
    """Trapezoidal area under ``values`` sampled at equal steps over [0, 1]."""
    v = np.asarray(values, np.float64)
    if v.size < 2:
        raise InputError("an area needs a curve of at least 2 points")
    return float((v.sum() - (v[0] + v[-1]) / 2.0) / (v.size - 1))
