"""Images to evaluate on: read from a folder, cropped the way the model's runtime crops them.

The crop follows the model's ``edgesal.preprocess`` metadata (:func:`edgesal.imaging.center_crop`),
and :class:`CropTransform` maps box coordinates of the original image onto the crop, so the
pointing game scores boxes drawn on the photos as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgesal.errors import InputError
from edgesal.metadata import Preprocess

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def read_folder(folder: str | Path, limit: int | None = None) -> dict[str, np.ndarray]:
    """``{file name: RGB uint8 HxWx3}`` for every image file in ``folder`` (sorted by name).

    An empty folder, a missing one, or an unreadable image file is an error naming the path.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"--images {folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(
            f"--images {folder}: no image files in this folder "
            f"(looked for {', '.join(IMAGE_SUFFIXES)})"
        )
    return {path.name: read_image(path) for path in files[:limit]}


def read_image(path: str | Path) -> np.ndarray:
    """One image file as RGB uint8 HxWx3 (grey images are repeated over the three channels)."""
    data = np.fromfile(str(path), dtype=np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise InputError(f"{path}: not a readable image file")
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def check_images(images: dict[str, np.ndarray]) -> None:
    """Every value must be an RGB uint8 HxWx3 array; an empty collection is an error."""
    if not images:
        raise InputError("no images to evaluate on")
    for name, rgb in images.items():
        if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3:
            shape = getattr(rgb, "shape", type(rgb).__name__)
            raise InputError(f"image '{name}': expected RGB HxWx3, got {shape}")
        if rgb.dtype != np.uint8:
            raise InputError(f"image '{name}': expected uint8 pixels, got {rgb.dtype}")


@dataclass(frozen=True)
class CropTransform:
    """x_crop = x * scale_x - left, y_crop = y * scale_y - top (continuous pixel coordinates)."""

    scale_x: float
    scale_y: float
    left: float
    top: float
    width: int
    height: int

    @classmethod
    def of(cls, image_hw: tuple[int, int], pre: Preprocess) -> CropTransform:
        """The transform :func:`edgesal.imaging.center_crop` applies to an image of ``image_hw``."""
        (h, w), (height, width) = image_hw, pre.size
        if pre.resize_shorter:
            scale = pre.resize_shorter / min(h, w)
            rw, rh = round(w * scale), round(h * scale)
        else:
            rw, rh = width, height
        return cls(rw / w, rh / h, (rw - width) // 2, (rh - height) // 2, width, height)

    def box(self, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """[x0, y0, x1, y1] on the original image -> the same box on the crop (not clipped)."""
        x0, y0, x1, y1 = box
        sx, sy = self.scale_x, self.scale_y
        return (x0 * sx - self.left, y0 * sy - self.top, x1 * sx - self.left, y1 * sy - self.top)
