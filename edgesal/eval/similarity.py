"""How alike two saliency maps are: rank correlation, structural similarity, top-k overlap.

These are the comparisons of the sanity checks (Adebayo et al. 2018) and of fidelity between two
saliency models (float vs int8, device vs workstation). All take two maps of the same shape.
"""

from __future__ import annotations

import cv2
import numpy as np

from edgesal.errors import InputError


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise InputError(f"cannot compare maps of shapes {a.shape} and {b.shape}")
    return a, b


def ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of the flattened ``values``; ties get the mean of their ranks."""
    flat = np.asarray(values).reshape(-1)
    _, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - (counts - 1) / 2.0)[inverse]).astype(np.float64)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """rho = Pearson(rank(a), rank(b)) over all pixels, ties averaged (Spearman 1904).

    A constant map has no ranking: rho is 1.0 when both maps are constant, else 0.0.
    """
    a, b = _pair(a, b)
    ra, rb = ranks(a), ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    if denom == 0.0:
        return 1.0 if np.ptp(a) == 0 and np.ptp(b) == 0 else 0.0
    return float((ra * rb).sum() / denom)


def unit_range(saliency: np.ndarray) -> np.ndarray:
    """(s - min) / (max - min); a constant map becomes all zeros."""
    s = np.asarray(saliency, np.float64)
    span = np.ptp(s)
    return (s - s.min()) / span if span > 0 else np.zeros_like(s)


def ssim(a: np.ndarray, b: np.ndarray, sigma: float = 1.5) -> float:
    """Mean SSIM (Wang et al. 2004) of the two maps scaled to [0, 1], Gaussian window ``sigma``.

    SSIM = ((2 mu_a mu_b + C1)(2 cov + C2)) / ((mu_a^2 + mu_b^2 + C1)(var_a + var_b + C2)),
    C1 = (0.01 L)^2, C2 = (0.03 L)^2 with L = 1; local statistics from a Gaussian window
    (radius 3.5 sigma), sample covariance, averaged over the pixels whose window fits the map,
    as scikit-image's ``structural_similarity(gaussian_weights=True, use_sample_covariance=True)``.
    """
    a, b = _pair(a, b)
    if a.ndim != 2:
        raise InputError(f"SSIM compares 2-D maps, got shape {a.shape}")
    a, b = unit_range(a), unit_range(b)
    radius = int(3.5 * sigma + 0.5)
    size = 2 * radius + 1
    if min(a.shape) < size:
        raise InputError(f"SSIM needs maps of at least {size}x{size} pixels, got {a.shape}")
    filt = _gaussian_filter(sigma, radius)
    mu_a, mu_b = filt(a), filt(b)
    norm = size * size / (size * size - 1.0)
    var_a = norm * (filt(a * a) - mu_a * mu_a)
    var_b = norm * (filt(b * b) - mu_b * mu_b)
    cov = norm * (filt(a * b) - mu_a * mu_b)
    c1, c2 = 0.01**2, 0.03**2
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2)
    value = num / den
    return float(value[radius:-radius, radius:-radius].mean())


def _gaussian_filter(sigma: float, radius: int):
    kernel = cv2.getGaussianKernel(2 * radius + 1, sigma, cv2.CV_64F)
    return lambda x: cv2.sepFilter2D(x, cv2.CV_64F, kernel, kernel, borderType=cv2.BORDER_REFLECT)


def top_k_mask(saliency: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean mask of the ``ceil(fraction * pixels)`` most salient pixels (stable on ties)."""
    if not 0.0 < fraction <= 1.0:
        raise InputError(f"--top-k {fraction}: must be a fraction in (0, 1]")
    flat = np.asarray(saliency).reshape(-1)
    k = max(1, int(np.ceil(fraction * flat.size)))
    mask = np.zeros(flat.size, bool)
    mask[np.argsort(-flat, kind="stable")[:k]] = True
    return mask.reshape(np.shape(saliency))


def top_k_iou(a: np.ndarray, b: np.ndarray, fraction: float = 0.1) -> float:
    """|top_k(a) & top_k(b)| / |top_k(a) | top_k(b)| for the top ``fraction`` of pixels."""
    a, b = _pair(a, b)
    ma, mb = top_k_mask(a, fraction), top_k_mask(b, fraction)
    return float((ma & mb).sum() / (ma | mb).sum())
