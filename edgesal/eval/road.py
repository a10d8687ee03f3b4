"""ROAD: RemOve And Debias (Rong et al. 2022) with noisy linear imputation.

Replacing removed pixels by a constant leaks the removal mask's shape to the model, which can
then classify the mask instead of the image. ROAD fills removed pixels from their neighbours
instead: each removed pixel equals the weighted mean of its 8 neighbours (weight 1/6 for the
4 direct ones, 1/12 for diagonals, neighbours outside the image skipped), a sparse linear system
solved for all removed pixels at once, plus Gaussian noise (sigma ``noise`` x the image's value
range). Removal fractions are taken in saliency order: MoRF (most relevant first, the probability
should fall: low is good) and LeRF (least relevant first: it should stay high).
"""

from __future__ import annotations

import numpy as np

from edgesal.errors import InputError
from edgesal.eval.perturb import Predict, order

ORDERS = ("morf", "lerf")
_NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def _sparse():
    try:
        import scipy.sparse
        import scipy.sparse.linalg
    except ImportError as exc:  # pragma: no cover - scipy comes with the eval extra
        raise InputError("ROAD's linear imputation needs scipy: pip install scipy") from exc
    return scipy.sparse, scipy.sparse.linalg


def impute(pixels: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """``pixels`` [H, W, C] with the ``removed`` [H, W] pixels filled by linear imputation.

    For removed pixel i with neighbours j: sum_j w_ij (x_i - x_j) = 0, known x_j moved to the
    right-hand side; one symmetric positive definite system solved for every channel.
    """
    sparse, linalg = _sparse()
    h, w, c = pixels.shape
    if removed.all():
        raise InputError("ROAD cannot impute an image with every pixel removed")
    unknown = np.flatnonzero(removed.reshape(-1))
    if unknown.size == 0:
        return pixels.copy()
    index = np.full(h * w, -1, np.int64)
    index[unknown] = np.arange(unknown.size)
    ys, xs = np.divmod(unknown, w)
    flat = pixels.reshape(h * w, c).astype(np.float64)
    rows, cols, vals = [], [], []
    diagonal = np.zeros(unknown.size)
    rhs = np.zeros((unknown.size, c))
    for dy, dx in _NEIGHBOURS:
        weight = 1 / 6 if dy == 0 or dx == 0 else 1 / 12
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        me, neighbour = np.flatnonzero(inside), (ny * w + nx)[inside]
        diagonal[me] += weight
        other = index[neighbour]
        free = other >= 0
        rows.append(me[free])
        cols.append(other[free])
        vals.append(np.full(free.sum(), -weight))
        np.add.at(rhs, me[~free], weight * flat[neighbour[~free]])
    n = unknown.size
    rows.append(np.arange(n))
    cols.append(np.arange(n))
    vals.append(diagonal)
    matrix = sparse.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )
    solved = linalg.spsolve(matrix, rhs).reshape(n, c)
    result = flat.copy()
    result[unknown] = solved
    return result.reshape(h, w, c).astype(pixels.dtype)


def noisy_impute(
    pixels: np.ndarray, removed: np.ndarray, noise: float, rng: np.random.Generator
) -> np.ndarray:
    """:func:`impute` plus N(0, (noise * value range)^2) on the imputed pixels only."""
    filled = impute(pixels, removed)
    sigma = noise * float(np.ptp(pixels))
    jitter = rng.standard_normal(filled.shape).astype(filled.dtype) * sigma
    return np.where(removed[..., None], filled + jitter, filled)


def road_curves(
    predict: Predict,
    pixels: np.ndarray,
    saliency: np.ndarray,
    target: int,
    fractions: list[float],
    noise: float,
    seed: list[int],
) -> dict[str, np.ndarray]:
    """``{"morf": probs, "lerf": probs}``: class ``target``'s probability after removing each
    fraction of pixels (most / least relevant first), imputed with noise drawn from ``seed``
    (a seed sequence)."""
    bad = [f for f in fractions if not 0.0 < f < 1.0]
    if bad or not fractions:
        raise InputError(f"--road-fractions {fractions}: need fractions strictly inside (0, 1)")
    h, w, _ = pixels.shape
    ranking = order(saliency)
    curves = {}
    for kind in ORDERS:
        ranked = ranking if kind == "morf" else ranking[::-1]
        rng = np.random.default_rng([*seed, ORDERS.index(kind)])
        images = []
        for fraction in fractions:
            removed = np.zeros(h * w, bool)
            removed[ranked[: int(round(fraction * h * w))]] = True
            images.append(noisy_impute(pixels, removed.reshape(h, w), noise, rng))
        curves[kind] = predict(np.stack(images))[:, target].astype(np.float64)
    return curves
