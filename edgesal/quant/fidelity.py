"""How faithful an int8 map is to the float map of the same image.

Per image: Spearman rank correlation over pixels (ties get average ranks), overlap (IoU) of the
top-10% pixel sets, SSIM and whether the top-1 class agrees. The map metrics are the ones
``edgesal eval`` reports (:mod:`edgesal.eval.similarity`: SSIM of Wang et al. 2004 on maps
scaled to [0, 1]), so ``quantize`` and ``eval compare`` give the same numbers for the same
maps. The budget holds when the mean Spearman and the mean top-10% IoU over the held-out images
reach their floors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edgesal.eval.similarity import spearman, ssim, top_k_iou

TOP_FRACTION = 0.10


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
        top10_iou=top_k_iou(float_map, int8_map, TOP_FRACTION),
        ssim=ssim(float_map, int8_map),
        top1_agrees=bool(np.argmax(float_scores) == np.argmax(int8_scores)),
        float_class=int(np.argmax(float_scores)),
        int8_class=int(np.argmax(int8_scores)),
    )


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
