"""How faithful an int8 map is to the float map of the same image.

Per image: Spearman rank correlation over pixels (ties get average ranks), overlap (IoU) of the
top-10% pixel sets, SSIM (Wang et al. 2004: Gaussian window sigma 1.5 cut at 11x11, data range
= the float map's max - min, the 5-pixel border left out as scikit-image does), and whether the
top-1 class agrees. The budget holds when the mean Spearman and the mean top-10% IoU over the
held-out images reach their floors.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from edgesal.errors import InputError

TOP_FRACTION = 0.10
_SSIM_RADIUS = 5  # scikit-image: int(3.5 * sigma + 0.5) for sigma 1.5


@dataclass(frozen=True)
class Budget:
    """The map error a quantized model may have: floors on mean Spearman and top-10% IoU."""

    spearman: float = 0.9
    iou: float = 0.7

    @classmethod
    def parse(cls, text: str) -> Budget:
        """``0.1`` (1 - Spearman allowed; IoU floor stays 0.7) or ``spearman=0.9,iou=0.7``."""
        try:
            if "=" not in text:
                error = float(text)
                if not 0.0 <= error <= 1.0:
                    raise ValueError
                return cls(spearman=1.0 - error)
            fields = dict(part.split("=", 1) for part in text.split(","))
            unknown = set(fields) - {"spearman", "iou"}
            if unknown:
                raise ValueError
            return cls(**{k: float(v) for k, v in fields.items()})
        except (ValueError, TypeError):
            raise InputError(
                f"--max-map-error {text!r}: give 1 - Spearman as a number in [0, 1] (e.g. 0.1) "
                "or floors as spearman=0.9,iou=0.7"
            ) from None

    def met(self, spearman: float, iou: float, margin: float = 0.0) -> bool:
        return spearman >= self.spearman + margin and iou >= self.iou + margin


@dataclass(frozen=True)
class ImageFidelity:
    """One image: the int8 map against the float map."""

    image: str
    split: str  # "calibration" | "validation"
    spearman: float
    top10_iou: float
    ssim: float
    top1_agrees: bool
    float_class: int
    int8_class: int


def compare(
    image: str,
    split: str,
    float_map: np.ndarray,
    int8_map: np.ndarray,
    float_scores: np.ndarray,
    int8_scores: np.ndarray,
) -> ImageFidelity:
    """All four measures for one image."""
    return ImageFidelity(
        image=image,
        split=split,
        spearman=spearman(float_map, int8_map),
        top10_iou=top_iou(float_map, int8_map),
        ssim=ssim(float_map, int8_map),
        top1_agrees=bool(np.argmax(float_scores) == np.argmax(int8_scores)),
        float_class=int(np.argmax(float_scores)),
        int8_class=int(np.argmax(int8_scores)),
    )


def ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties sharing their average rank."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(flat, kind="stable")
    sorted_values = flat[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_values)) + 1]
    ends = np.r_[starts[1:], flat.size]
    averages = (starts + ends + 1) / 2.0  # mean of the 1-based positions start+1 .. end
    result = np.empty(flat.size)
    result[order] = np.repeat(averages, ends - starts)
    return result


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of the ranks; 1.0 when both maps are constant, 0.0 when one is."""
    ra, rb = ranks(a), ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denominator = math.sqrt(float((ra * ra).sum()) * float((rb * rb).sum()))
    if denominator == 0.0:
        return 1.0 if np.ptp(a) == np.ptp(b) == 0 else 0.0
    return float((ra * rb).sum() / denominator)


def top_indices(values: np.ndarray, fraction: float = TOP_FRACTION) -> np.ndarray:
    """Indices of the ceil(fraction * n) largest values (ties broken by position)."""
    flat = np.asarray(values).ravel()
    k = max(1, math.ceil(fraction * flat.size))
    return np.argsort(-flat, kind="stable")[:k]


def top_iou(a: np.ndarray, b: np.ndarray, fraction: float = TOP_FRACTION) -> float:
    """|A & B| / |A | B| of the top-``fraction`` pixel sets."""
    top_a, top_b = set(top_indices(a, fraction).tolist()), set(top_indices(b, fraction).tolist())
    return len(top_a & top_b) / len(top_a | top_b)


def ssim(reference: np.ndarray, other: np.ndarray) -> float:
    """Mean SSIM over the map (2-D, or the last two axes averaged over the rest)."""
    ref = np.asarray(reference, dtype=np.float64)
    span = float(np.ptp(ref)) or 1.0
    ref, oth = ref / span, np.asarray(other, dtype=np.float64) / span
    maps = ref.reshape(-1, *ref.shape[-2:]), oth.reshape(-1, *oth.shape[-2:])
    return float(np.mean([_ssim2d(x, y) for x, y in zip(*maps, strict=True)]))


def _ssim2d(x: np.ndarray, y: np.ndarray) -> float:
    c1, c2 = (0.01 * 1.0) ** 2, (0.03 * 1.0) ** 2

    def blur(z: np.ndarray) -> np.ndarray:
        size = 2 * _SSIM_RADIUS + 1
        return cv2.GaussianBlur(z, (size, size), 1.5, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    index = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    pad = _SSIM_RADIUS
    return float(index[pad:-pad, pad:-pad].mean())


@dataclass(frozen=True)
class Summary:
    """Means over one split."""

    images: int
    spearman: float
    top10_iou: float
    ssim: float
    top1_agreement: float


def summarize(rows: list[ImageFidelity]) -> Summary:
    if not rows:
        return Summary(0, float("nan"), float("nan"), float("nan"), float("nan"))
    return Summary(
        images=len(rows),
        spearman=float(np.mean([r.spearman for r in rows])),
        top10_iou=float(np.mean([r.top10_iou for r in rows])),
        ssim=float(np.mean([r.ssim for r in rows])),
        top1_agreement=float(np.mean([r.top1_agrees for r in rows])),
    )


def as_dict(row: ImageFidelity | Summary) -> dict:
    return asdict(row)
