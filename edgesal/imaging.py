"""Workstation images: the one reader of image files and folders, heat-map overlays, softmax.

Files are decoded as the device decodes them (OpenCV, ``IMREAD_COLOR``: grey and alpha images
become three channels) and returned as RGB uint8 [H, W, 3]; a folder lists the suffixes the
device's folder source reads, in name order. Turning an image into a model input is
:func:`edgesal.runtimes.contract.image_tensor`, the device's own pixel path.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgesal.errors import InputError
from edgesal.runtimes.errors import SourceError
from edgesal.runtimes.sources import IMAGE_SUFFIXES, decode_image


def read_image(path: str | Path) -> np.ndarray:
    """One image file as RGB uint8 [H, W, 3]; unreadable, empty or oversized files are refused
    (:func:`edgesal.runtimes.sources.decode_image`, the device's reader)."""
    try:
        bgr = decode_image(path)
    except SourceError as exc:
        raise InputError(str(exc)) from None
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def read_folder(
    folder: str | Path,
    flag: str = "--images",
    limit: int | None = None,
    unreadable: list[str] | None = None,
) -> dict[str, np.ndarray]:
    """``{file name: RGB uint8 [H, W, 3]}`` of the image files in ``folder``, in name order (the
    first ``limit``). An unreadable file is an error, or with an ``unreadable`` list its name is
    appended there and it is skipped. Errors name ``flag`` and the path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{flag} {folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(
            f"{flag} {folder}: no image files in this folder "
            f"(looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    images = {}
    for path in files[:limit]:
        try:
            images[path.name] = read_image(path)
        except InputError:
            if unreadable is None:
                raise
            unreadable.append(path.name)
    if not images:
        raise InputError(f"{flag} {folder}: none of its {len(files)} image files could be read")
    return images


def overlay(crop: np.ndarray, saliency: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """BGR image: the crop blended with the JET-coloured map (map in [0, 1], resized to fit)."""
    heat = np.clip(saliency, 0.0, 1.0)
    if heat.shape != crop.shape[:2]:
        heat = cv2.resize(heat, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_LINEAR)
    coloured = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
    bgr = cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)
    return cv2.addWeighted(bgr, 1.0 - alpha, coloured, alpha, 0.0)


def softmax(logits: np.ndarray) -> np.ndarray:
    """exp(z - max z) / sum exp(z - max z) over the last axis."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)
