"""Detector explanations: the top-k scoring elements of a score output, their boxes, and drawing.

A model exported with ``--target output:NAME:input`` takes an int64 input ``target`` [N] choosing
the flat element of output NAME (per batch item) whose score the map explains, so one file explains
any box. The runtime picks the k highest-scoring elements and explains them in one batched call
(:meth:`edgesal.runtimes.model.Variant.detect`). With ``--boxes-output B`` the metadata names the
box output: element ``i`` of a score output with P elements per item belongs to box
``i // (P // A)`` of the A boxes of B (one score per box, or one per box and class), whose first
four values are its coordinates in ``format``: corners or centre+size in input pixels, ``-norm``
in [0, 1], or ``anchors``: SSD offsets (dx, dy, dw, dh) in units of 1/``scale`` of anchor
(cx, cy, w, h) [0, 1], as MediaPipe's detectors decode them (cx = dx / scale * w_a + cx_a,
w = dw / scale * w_a).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np

from edgesal.runtimes.errors import ModelError

BOX_FORMATS = ("xyxy", "yxyx", "cxcywh", "xyxy-norm", "yxyx-norm", "cxcywh-norm", "anchors")
_ELEMENT_TARGET = re.compile(r"output:(.+):input")


@dataclass(frozen=True)
class BoxSpec:
    """The box output named in metadata: ``{"output": NAME, "format": "xyxy"}`` (format
    ``anchors`` adds ``"anchors": [[cx, cy, w, h], ...]`` and ``"scale"``)."""

    output: str
    format: str = "xyxy"
    anchors: tuple[tuple[float, ...], ...] = ()
    scale: float = 1.0

    @classmethod
    def from_metadata(cls, value: object, path: str) -> BoxSpec | None:
        if not isinstance(value, dict) or not value.get("output"):
            return None
        fmt = str(value.get("format") or "xyxy")
        if fmt not in BOX_FORMATS:
            raise ModelError(
                f"{path}: metadata box format '{fmt}' is not one of {', '.join(BOX_FORMATS)}"
            )
        anchors = value.get("anchors") or ()
        try:
            rows = tuple(tuple(float(v) for v in row) for row in anchors)
            scale = float(value.get("scale") or 1.0)
        except (TypeError, ValueError):
            raise ModelError(f"{path}: metadata box anchors are not rows of numbers") from None
        if fmt == "anchors" and (not rows or any(len(r) != 4 for r in rows) or scale <= 0):
            raise ModelError(
                f"{path}: box format 'anchors' needs [cx, cy, w, h] rows and scale > 0"
            )
        return cls(str(value["output"]), fmt, rows, scale)


@dataclass
class Detection:
    """One explained element: flat ``index`` in the score output, its raw ``score``, the map and,
    when the model has a box output, ``box`` = (x0, y0, x1, y1) in input-grid pixels."""

    index: int
    score: float
    saliency: np.ndarray
    box: tuple[float, float, float, float] | None = None


def element_output(target: str) -> str | None:
    """NAME of a ``output:NAME:input`` target spec (a detector model), else None."""
    match = _ELEMENT_TARGET.fullmatch(target)
    return match.group(1) if match else None


def top_elements(scores: np.ndarray, k: int) -> list[int]:
    """Flat indices of the ``k`` highest values of one item's scores, best first (ties: lower
    index first)."""
    flat = np.asarray(scores, np.float64).reshape(-1)
    if k <= 0:
        raise ModelError(f"--top-k {k}: explain at least one element")
    return [int(i) for i in np.argsort(-flat, kind="stable")[: min(k, flat.size)]]


def element_box(
    boxes: np.ndarray, index: int, per_item: int, spec: BoxSpec, grid: tuple[int, int]
) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) in pixels of the ``grid`` = (H, W) of the box of score element ``index``.

    ``boxes`` is one item's box output (any shape whose last axis holds >= 4 values)."""
    flat = np.asarray(boxes, np.float64).reshape(-1, boxes.shape[-1])
    count = flat.shape[0]
    if flat.shape[1] < 4 or per_item % count:
        raise ModelError(
            f"box output '{spec.output}' {boxes.shape} does not pair with {per_item} scores "
            "(needs >= 4 values per box and a whole number of scores per box)"
        )
    box = index // (per_item // count)
    a, b, c, d = flat[box, :4]
    if spec.format == "anchors":
        a, b, c, d = _from_anchor(spec, box, count, (a, b, c, d))
    kind = spec.format.removesuffix("-norm")
    if kind == "yxyx":
        a, b, c, d = b, a, d, c
    elif kind == "cxcywh":
        a, b, c, d = a - c / 2, b - d / 2, a + c / 2, b + d / 2
    if spec.format.endswith("-norm") or spec.format == "anchors":
        height, width = grid
        a, b, c, d = a * width, b * height, c * width, d * height
    return (float(a), float(b), float(c), float(d))


def _from_anchor(spec: BoxSpec, box: int, count: int, offsets) -> tuple[float, ...]:
    """SSD offsets of ``box`` -> normalized corners: cx = dx / scale * w_a + cx_a, w = dw /
    scale * w_a (the same for y, h)."""
    if len(spec.anchors) != count:
        raise ModelError(
            f"box output '{spec.output}' has {count} boxes but the metadata {len(spec.anchors)} "
            "anchors"
        )
    dx, dy, dw, dh = (v / spec.scale for v in offsets)
    acx, acy, aw, ah = spec.anchors[box]
    cx, cy, w, h = dx * aw + acx, dy * ah + acy, dw * aw, dh * ah
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def draw_boxes(
    image: np.ndarray,
    detections: list[Detection],
    grid: tuple[int, int],
    color: tuple[int, int, int] = (0, 255, 0),
) -> np.ndarray:
    """``image`` (BGR, any size showing the model's input grid ``grid`` = (H, W)) with each
    detection's box scaled onto it and labelled with its rank and score; drawn in place."""
    scale_y, scale_x = image.shape[0] / grid[0], image.shape[1] / grid[1]
    for rank, (det, box) in enumerate((d, d.box) for d in detections if d.box is not None):
        x0, y0, x1, y1 = box
        corners = [(x0, y0), (x1, y1)]
        (p0, p1) = [(round(x * scale_x), round(y * scale_y)) for x, y in corners]
        thickness = 2 if rank == 0 else 1
        cv2.rectangle(image, p0, p1, color, thickness)
        label = f"#{rank + 1} {det.score:.2f}"
        cv2.putText(image, label, (p0[0], max(10, p0[1] - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    color, 1, cv2.LINE_AA)  # fmt: skip
    return image


def batch_of(shape: tuple, wanted: int) -> int:
    """Items one call takes: the input's static batch, or ``wanted`` for a dynamic batch."""
    batch = shape[0] if shape else None
    return int(batch) if isinstance(batch, int) and batch > 0 else max(1, wanted)


def chunks(indices: list[int], size: int) -> list[list[int]]:
    """``indices`` in runs of ``size`` (the last padded with its first index to a full batch)."""
    runs = [indices[i : i + size] for i in range(0, len(indices), size)]
    return [run + [run[0]] * (size - len(run)) for run in runs] if runs else []
