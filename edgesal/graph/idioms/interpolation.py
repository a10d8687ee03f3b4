"""Interpolation matrices: Resize along one axis is y = M x with a constant (out x in) matrix.

The one definition of M for nearest, linear and cubic modes and every
coordinate_transformation_mode of opsets 13-21. Two emitters use it: the Resize gradient rule
(``edgesal/autodiff/rules/resize.py``: dx = M^T dy as MatMuls) and the TFLite lowering of a
Resize that RESIZE_BILINEAR cannot compute exactly (``converters/tflite/ops/resize.py``: M as a
BATCH_MATMUL, nearest as a GATHER of ``M.argmax(1)``). It lives in the graph layer so the
converters read it without importing the gradient rules.

Source coordinates are computed in float32 with the ONNX formulas, as onnxruntime does, so the
nearest-neighbour choices agree with it at exact .5 boundaries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Axis:
    """One axis of a Resize: lengths, scale (float32, as the runtime uses it) and roi."""

    n_in: int
    n_out: int
    scale: np.float32
    roi: tuple[float, float] = (0.0, 1.0)


def source_coordinates(mode: str, axis: Axis) -> np.ndarray:
    """x_original for every output index (float32), per the coordinate_transformation_mode."""
    i = np.arange(axis.n_out, dtype=np.float32)
    scale, n_in, n_out = axis.scale, np.float32(axis.n_in), np.float32(axis.n_out)
    half = np.float32(0.5)
    if mode == "asymmetric":
        return i / scale
    if mode == "align_corners":
        return np.zeros_like(i) if axis.n_out == 1 else i * (n_in - 1) / (n_out - 1)
    if mode == "pytorch_half_pixel" and axis.n_out == 1:
        return np.zeros_like(i)
    if mode in ("half_pixel", "pytorch_half_pixel"):
        return (i + half) / scale - half
    if mode == "half_pixel_symmetric":
        adjustment = n_out / (scale * n_in)
        offset = n_in / 2 * (1 - adjustment)
        return offset + (i + half) / scale - half
    start, end = (np.float32(v) for v in axis.roi)
    if axis.n_out == 1:
        return np.full_like(i, half * (start + end) * (n_in - 1))
    return start * (n_in - 1) + i * (end - start) * (n_in - 1) / (n_out - 1)


def nearest_matrix(coords: np.ndarray, n_in: int, rounding: str) -> np.ndarray:
    """0/1 matrix picking the rounded, clamped source index of every output."""
    floor = np.floor(coords)
    at_half = coords == floor + np.float32(0.5)
    if rounding == "floor":
        index = floor
    elif rounding == "ceil":
        index = np.ceil(coords)
    elif rounding == "round_prefer_floor":
        index = np.where(at_half, floor, np.floor(coords + np.float32(0.5)))
    else:
        index = np.where(at_half, floor + 1, np.floor(coords + np.float32(0.5)))
    index = np.clip(index.astype(np.int64), 0, n_in - 1)
    matrix = np.zeros((len(coords), n_in))
    matrix[np.arange(len(coords)), index] = 1.0
    return matrix


def linear_matrix(coords: np.ndarray, n_in: int) -> np.ndarray:
    """Two taps per output: floor(c) and floor(c)+1 of the coordinate clamped to [0, n_in-1]."""
    c = np.clip(coords.astype(np.float64), 0, n_in - 1)
    left = np.floor(c).astype(np.int64)
    frac = c - left
    rows = np.arange(len(c))
    matrix = np.zeros((len(c), n_in))
    np.add.at(matrix, (rows, left), 1 - frac)
    np.add.at(matrix, (rows, np.minimum(left + 1, n_in - 1)), frac)
    return matrix


def cubic_matrix(coords: np.ndarray, n_in: int, a: float, exclude_outside: bool) -> np.ndarray:
    """Keys' cubic convolution with coefficient a on taps floor(c)-1 .. floor(c)+2.

    Taps outside the input read the edge value, or are dropped and the rest renormalised when
    exclude_outside is set.
    """
    c = coords.astype(np.float64)
    base = np.floor(c).astype(np.int64)
    r = c - base
    distances = np.stack([1 + r, r, 1 - r, 2 - r], axis=1)
    weights = np.where(
        distances <= 1,
        ((a + 2) * distances - (a + 3)) * distances**2 + 1,
        ((a * distances - 5 * a) * distances + 8 * a) * distances - 4 * a,
    )
    taps = base[:, None] + np.arange(-1, 3)[None, :]
    if exclude_outside:
        weights = np.where((taps < 0) | (taps >= n_in), 0.0, weights)
        weights /= weights.sum(axis=1, keepdims=True)
    matrix = np.zeros((len(c), n_in))
    rows = np.repeat(np.arange(len(c)), 4)
    np.add.at(matrix, (rows, np.clip(taps, 0, n_in - 1).ravel()), weights.ravel())
    return matrix


def interpolation_matrix(attr: Callable[[str, Any], Any], axis: Axis) -> np.ndarray:
    """The (n_out, n_in) matrix M with y = M x along one axis; ``attr(name, default)`` reads the
    Resize node's attributes (shared with the TFLite lowering, which emits the same matrices)."""
    ctm = attr("coordinate_transformation_mode", "half_pixel")
    mode = attr("mode", "nearest")
    coords = source_coordinates(ctm, axis)
    if mode == "nearest":
        matrix = nearest_matrix(coords, axis.n_in, attr("nearest_mode", "round_prefer_floor"))
    elif mode == "linear":
        matrix = linear_matrix(coords, axis.n_in)
    else:
        a = float(attr("cubic_coeff_a", -0.75))
        matrix = cubic_matrix(coords, axis.n_in, a, bool(attr("exclude_outside", 0)))
    if ctm == "tf_crop_and_resize":
        outside = (coords < 0) | (coords > axis.n_in - 1)
        matrix[outside] = 0.0  # those outputs hold extrapolation_value, a constant
    return matrix
