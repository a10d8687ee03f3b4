"""Images to evaluate on, checked, and where a box on a photo lands on the model's crop.

Images are read by :func:`edgesal.imaging.read_folder` and cropped by the device's own path
(:func:`edgesal.runtimes.contract.rgb_crop`); :class:`CropTransform` maps box coordinates of the
original image onto that crop, so the pointing game scores boxes drawn on the photos as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgesal.errors import InputError
from edgesal.runtimes.contract import Preprocess, model_region


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
        """The transform of :func:`~edgesal.runtimes.contract.rgb_crop` on an image of
        ``image_hw``: its region (:func:`~edgesal.runtimes.contract.model_region`) stretched to
        the input grid."""
        region, (height, width) = model_region(image_hw, pre), pre.size
        sx, sy = width / region.w, height / region.h
        return cls(sx, sy, region.x * sx, region.y * sy, width, height)

    def box(self, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """[x0, y0, x1, y1] on the original image -> the same box on the crop (not clipped)."""
        x0, y0, x1, y1 = box
        sx, sy = self.scale_x, self.scale_y
        return (x0 * sx - self.left, y0 * sy - self.top, x1 * sx - self.left, y1 * sy - self.top)
