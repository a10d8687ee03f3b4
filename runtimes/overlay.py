"""Draw a saliency map on a frame: colour map blended with alpha, top-k% contour, label text."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edgesal.runtimes.contract import Region

COLORMAPS = {
    "jet": cv2.COLORMAP_JET,
    "turbo": cv2.COLORMAP_TURBO,
    "inferno": cv2.COLORMAP_INFERNO,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "hot": cv2.COLORMAP_HOT,
}


@dataclass(frozen=True)
class OverlayStyle:
    """``alpha``: weight of the colour map; ``contour``: top fraction outlined (0: none)."""

    colormap: str = "jet"
    alpha: float = 0.45
    contour: float = 0.1
    text: bool = True


def top_fraction_mask(saliency: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean mask of the ``fraction`` most salient pixels (ties at the threshold included)."""
    if fraction <= 0:
        return np.zeros(saliency.shape, bool)
    flat = saliency.ravel()
    keep = max(1, round(min(fraction, 1.0) * flat.size))
    threshold = np.partition(flat, flat.size - keep)[flat.size - keep]
    return saliency >= threshold if threshold > saliency.min() else saliency > threshold


def draw(
    frame: np.ndarray,
    saliency: np.ndarray | None,
    region: Region | None,
    caption: str,
    style: OverlayStyle,
    warning: str = "",
) -> np.ndarray:
    """A copy of ``frame`` with the map (input grid, values in [0, 1]) blended onto ``region``."""
    out = frame.copy()
    if saliency is not None and region is not None:
        roi = out[region.y : region.y + region.h, region.x : region.x + region.w]
        grid = np.clip(saliency * 255.0, 0, 255).astype(np.uint8)
        levels = cv2.resize(grid, (region.w, region.h), interpolation=cv2.INTER_LINEAR)
        coloured = cv2.applyColorMap(levels, COLORMAPS[style.colormap])
        cv2.addWeighted(coloured, style.alpha, roi, 1.0 - style.alpha, 0.0, dst=roi)
        if style.contour > 0:
            outlines = top_region_outlines(saliency, style.contour, (region.w, region.h))
            cv2.drawContours(roi, outlines, -1, (255, 255, 255), 2)
    if style.text:
        _label(out, caption, (0, 0, 0), (255, 255, 255), 0)
        if warning:
            _label(out, warning, (0, 0, 160), (255, 255, 255), 1)
    return out


def top_region_outlines(
    saliency: np.ndarray, fraction: float, size: tuple[int, int]
) -> list[np.ndarray]:
    """Outlines of the ``fraction`` most salient area, as contours in a ``size`` (w, h) image.

    The map is smoothed over 2% of its size first: raw gradient maps are speckled, and the
    outline of the top pixels themselves is a thousand single-pixel islands that hide the frame
    and cost milliseconds to draw. Contours are found on the input grid and scaled to ``size``.
    """
    height, width = saliency.shape
    smooth = cv2.GaussianBlur(saliency.astype(np.float32), (0, 0), max(height, width) / 50)
    mask = top_fraction_mask(smooth, fraction).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    scale = np.array([size[0] / width, size[1] / height], np.float32)
    return [np.round((c + 0.5) * scale - 0.5).astype(np.int32) for c in contours]


def _label(image: np.ndarray, text: str, background: tuple, colour: tuple, row: int) -> None:
    if not text:
        return
    scale = max(0.4, min(image.shape[:2]) / 600)
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    y0 = row * (h + base + 8)
    cv2.rectangle(image, (0, y0), (w + 8, y0 + h + base + 8), background, -1)
    cv2.putText(
        image, text, (4, y0 + h + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA
    )
