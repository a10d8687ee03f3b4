"""Detector explanations: the top-k scoring elements of a score output, their boxes, and drawing.

A model exported with ``--target output:NAME:input`` takes an int64 input ``target`` [N] choosing
the flat element of output NAME (per batch item) whose score the map explains, so one file explains
any box. The runtime picks the k highest-scoring elements and explains them in one batched call
(:meth:`edgesal.runtimes.model.Variant.detect`). With ``--boxes-output B`` the metadata names the
box output: element ``i`` of a score output with P elements per item belongs to box
``i // (P // A)`` of the A boxes of B (one score per box, or one per box and class), whose first
four values are its coordinates in ``format``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np

from edgesal.runtimes.errors import ModelError

BOX_FORMATS = ("xyxy", "yxyx", "cxcywh", "xyxy-norm", "yxyx-norm", "cxcywh-norm")
_ELEMENT_TARGET = re.compile(r"output:(.+):input")


@dataclass(frozen=True)
class BoxSpec:
    """The box output named in metadata: ``{"output": NAME, "format": "xyxy"}``."""

    output: str
    format: str = "xyxy"

    @classmethod
    def from_metadata(cls, value: object, path: str) -> BoxSpec | None:
        if not isinstance(value, dict) or not value.get("output"):
            return None
        spec = cls(str(value["output"]), str(value.get("format") or "xyxy"))
        if spec.format not in BOX_FORMATS:
            raise ModelError(
                f"{path}: metadata box format '{spec.format}' is not one of "
                f"{', '.join(BOX_FORMATS)}"
            )
        return spec


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
    a, b, c, d = flat[index // (per_item // count), :4]
    kind = spec.format.removesuffix("-norm")
    if kind == "yxyx":
        a, b, c, d = b, a, d, c
    elif kind == "cxcywh":
        a, b, c, d = a - c / 2, b - d / 2, a + c / 2, b + d / 2
    if spec.format.endswith("-norm"):
        height, width = grid
        a, b, c, d = a * width, b * height, c * width, d * height
    return (float(a), float(b), float(c), float(d))


def draw_boxes(
    image: np.ndarray,
    detections: list[Detection],
    grid: tuple[int, int],
    color: tuple[int, int, int] = (0, 255, 0),
) -> np.ndarray:
    """``image`` (BGR, any size showing the model's input grid ``grid`` = (H, W)) with each
    detection's box scaled onto it and labelled with its rank and score; drawn in place."""
    scale_y, scale_x = image.shape[0] / grid[0], image.shape[1] / grid[1]
    for rank, det in enumerate(d for d in detections if d.box is not None):
        x0, y0, x1, y1 = det.box
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
