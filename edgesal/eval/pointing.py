"""The pointing game (Zhang et al. 2016): is the map's maximum on the object?

A hit is counted when a maximal pixel of the map lies inside one of the image's boxes or within
``tolerance`` pixels of one (Zhang et al. use 15 pixels at 224x224; ties for the maximum count as
a hit when any of them does, as Quantus's PointingGame does). Boxes come from a COCO-style JSON
file (``images`` + ``annotations`` with ``bbox`` [x, y, w, h]) or a simple map
``{"image.jpg": [x0, y0, x1, y1]}`` (or a list of such boxes), in pixels of the original image.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgesal.errors import InputError

Box = tuple[float, float, float, float]  # x0, y0, x1, y1
MAX_BOXES_FILE = 64 << 20


def load_boxes(path: str | Path) -> dict[str, list[Box]]:
    """``{image file name: [boxes]}`` from a COCO-style or simple boxes file."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_BOXES_FILE:
            raise InputError(f"--boxes {path}: larger than {MAX_BOXES_FILE >> 20} MB")
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"--boxes {path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InputError(f"--boxes {path}: not a readable JSON file ({exc})") from exc
    return parse_boxes(data, str(path))


def parse_boxes(data: object, source: str = "boxes") -> dict[str, list[Box]]:
    """``{image: [boxes]}`` from decoded COCO JSON or a simple ``{image: box or [boxes]}`` map."""
    if isinstance(data, dict) and "annotations" in data and "images" in data:
        return _coco(data, source)
    if isinstance(data, dict):
        return {str(k): _boxes(v, f"--boxes {source}: image '{k}'") for k, v in data.items()}
    raise InputError(f"--boxes {source}: expected a COCO JSON or an {{image: [x0,y0,x1,y1]}} map")


def _coco(data: dict, path: str) -> dict[str, list[Box]]:
    images, annotations = data["images"], data["annotations"]
    if not (isinstance(images, list) and isinstance(annotations, list)):
        raise InputError(f"--boxes {path}: COCO 'images' and 'annotations' must be lists")
    names = {}
    for i, img in enumerate(images):
        if not (isinstance(img, dict) and isinstance(img.get("id"), int | str)):
            raise InputError(f"--boxes {path}: image {i} has no 'id' (number or string)")
        if "file_name" not in img:
            raise InputError(f"--boxes {path}: image {i} has no 'file_name'")
        names[img["id"]] = str(img["file_name"])
    boxes: dict[str, list[Box]] = {name: [] for name in names.values()}
    for i, ann in enumerate(annotations):
        if not isinstance(ann, dict) or not isinstance(ann.get("image_id"), int | str):
            raise InputError(f"--boxes {path}: annotation {i} has no 'image_id'")
        if ann["image_id"] not in names:
            raise InputError(f"--boxes {path}: annotation {i} names an unknown image_id")
        x, y, w, h = _numbers(ann.get("bbox"), 4, f"--boxes {path}: annotation {i} bbox")
        boxes[names[ann["image_id"]]].append((x, y, x + w, y + h))
    return boxes


def _boxes(value, where: str) -> list[Box]:
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        return [_box(v, where) for v in value]
    return [_box(value, where)]


def _box(value, where: str) -> Box:
    x0, y0, x1, y1 = _numbers(value, 4, where)
    if x1 < x0 or y1 < y0:
        raise InputError(f"{where}: box {value} has x1 < x0 or y1 < y0")
    return (x0, y0, x1, y1)


def _numbers(value, n: int, where: str) -> list[float]:
    if not isinstance(value, list | tuple) or len(value) != n:
        raise InputError(f"{where}: expected {n} numbers, got {value!r}")
    try:
        return [float(v) for v in value]
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{where}: expected {n} numbers, got {value!r}") from None


def boxes_for(boxes: dict[str, list[Box]], name: str) -> list[Box] | None:
    """The boxes of image ``name``, matched by file name, then by name without extension."""
    if name in boxes:
        return boxes[name]
    stem = Path(name).stem
    matches = [v for k, v in boxes.items() if Path(k).stem == stem]
    return matches[0] if len(matches) == 1 else None


def distance_to_boxes(shape: tuple[int, int], boxes: list[Box]) -> np.ndarray:
    """[H, W]: Euclidean distance from each pixel centre (x + 0.5, y + 0.5) to the nearest box
    (0 inside a box); ``inf`` with no box."""
    h, w = shape
    cy, cx = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    best = np.full(shape, np.inf)
    for x0, y0, x1, y1 in boxes:
        dx = np.maximum(np.maximum(x0 - cx, cx - x1), 0.0)
        dy = np.maximum(np.maximum(y0 - cy, cy - y1), 0.0)
        best = np.minimum(best, np.hypot(dx, dy))
    return best


def visible(shape: tuple[int, int], boxes: list[Box]) -> list[Box]:
    """The boxes that overlap the ``shape`` = (H, W) grid, clipped to it."""
    h, w = shape
    kept = []
    for x0, y0, x1, y1 in boxes:
        clipped = (max(x0, 0.0), max(y0, 0.0), min(x1, float(w)), min(y1, float(h)))
        if clipped[2] > clipped[0] and clipped[3] > clipped[1]:
            kept.append(clipped)
    return kept


def pointing_hit(saliency: np.ndarray, boxes: list[Box], tolerance: float) -> bool | None:
    """True when a maximal pixel is within ``tolerance`` of a box; None when no box is visible
    on the map (the image is not scored)."""
    if tolerance < 0:
        raise InputError(f"--tolerance {tolerance}: must be >= 0")
    shown = visible(saliency.shape, boxes)
    if not shown:
        return None
    peak = saliency == saliency.max()
    return bool((distance_to_boxes(saliency.shape, shown)[peak] <= tolerance).any())
