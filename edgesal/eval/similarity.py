"""How alike two saliency maps are: rank correlation, structural similarity, top-k overlap.

The one set of map metrics: the sanity checks (Adebayo et al. 2018), the fidelity between two
saliency models (``edgesal eval compare``, a device's records) and the int8 fidelity report of
``edgesal quantize`` (:mod:`edgesal.quant.fidelity`) all use these. All take two maps of the
same shape.
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
    """Mean SSIM (Wang et al. 2004) of two maps, each first scaled to [0, 1] (:func:`unit_range`).

    SSIM = ((2 mu_a mu_b + C1)(2 cov + C2)) / ((mu_a^2 + mu_b^2 + C1)(var_a + var_b + C2)),
    C1 = (0.01 L)^2, C2 = (0.03 L)^2 with L = 1; local means, variances and covariance weighted
    by a Gaussian window of ``sigma`` (1.5: 11 x 11, radius ``int(3.5 sigma + 0.5)``) as in the
    paper (population statistics), averaged over the pixels whose window fits inside the map.
    Equals scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1)`` on the scaled maps. Maps [..., H, W]: the mean
    over the leading axes of each pair's SSIM. The one SSIM of ``eval`` and ``quantize``.
    """
    a, b = _pair(a, b)
    if a.ndim < 2:
        raise InputError(f"SSIM compares 2-D maps, got shape {a.shape}")
    radius = int(3.5 * sigma + 0.5)
    size = 2 * radius + 1
    if min(a.shape[-2:]) < size:
        raise InputError(f"SSIM needs maps of at least {size}x{size} pixels, got {a.shape}")
    pairs = zip(a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:]), strict=True)
    filt = _gaussian_filter(sigma, radius)
    return float(np.mean([_ssim2d(unit_range(x), unit_range(y), filt, radius) for x, y in pairs]))


def _ssim2d(a: np.ndarray, b: np.ndarray, filt, radius: int) -> float:
    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a * mu_a
    var_b = filt(b * b) - mu_b * mu_b
    cov = filt(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2)
    return float((num / den)[radius:-radius, radius:-radius].mean())


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
