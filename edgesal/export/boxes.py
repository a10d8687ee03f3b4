"""The box output of a detector export (``--boxes-output``), checked and written as metadata.

Runtimes decode and draw the boxes (:mod:`edgesal.runtimes.detections`); this module checks at
export time that the named output gives a box to every scored element and, for SSD-style
anchor-relative boxes (format ``anchors``), carries the anchors ([A, 4] rows cx, cy, w, h in
[0, 1]) and the offset scale into the metadata.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx

from edgesal.errors import InputError
from edgesal.graph.info import TensorInfo, is_static
from edgesal.options import BoxOptions

MAX_ANCHOR_FILE = 16 << 20


def box_metadata(boxes: BoxOptions, model: onnx.ModelProto, scores: str) -> dict:
    """``edgesal.boxes`` for ``model`` whose score output is ``scores``, checked."""
    if boxes.output is None:
        raise InputError("--boxes-output: not given, so there are no boxes to describe")
    count = check_pairing(model, boxes.output, scores)
    entry: dict = {"output": boxes.output, "format": boxes.format}
    if boxes.anchors is not None:
        if len(boxes.anchors) != count:
            raise InputError(
                f"--boxes-anchors: {len(boxes.anchors)} anchors for the {count} boxes of "
                f"'{boxes.output}'"
            )
        entry["anchors"] = np.round(boxes.anchors.astype(np.float64), 7).tolist()
        entry["scale"] = float(boxes.scale)
    return entry


def check_pairing(model: onnx.ModelProto, boxes: str, scores: str) -> int:
    """The number A of boxes per item of output ``boxes`` ([N, ..., >= 4]) if every one of the P
    elements per item of ``scores`` has one (P a multiple of A); else an error."""
    names = [o.name for o in model.graph.output]
    if boxes not in names:
        raise InputError(
            f"--boxes-output: '{boxes}' is not an output of the model (outputs: "
            f"{', '.join(names)}); the runtime reads it to draw detections"
        )
    info = TensorInfo(model)
    box_dims, score_dims = info.dims(boxes) or (), info.dims(scores) or ()
    box_rest, score_rest = box_dims[1:], score_dims[1:]  # past the batch axis
    if not (is_static(box_rest) and is_static(score_rest)):
        raise InputError(
            f"--boxes-output {boxes}: shapes {list(box_dims)} and '{scores}' {list(score_dims)} "
            "need known sizes past the batch axis to pair boxes with scores"
        )
    count, per_item = math.prod(box_rest[:-1]), math.prod(score_rest)
    if len(box_rest) < 1 or box_rest[-1] < 4 or per_item % max(count, 1):
        raise InputError(
            f"--boxes-output {boxes}: shape {list(box_dims)} does not give a box (>= 4 values on "
            f"the last axis) to each of the {per_item} elements of '{scores}' {list(score_dims)}"
        )
    return count


def read_anchors(path: str | Path) -> np.ndarray:
    """[A, 4] anchors (cx, cy, w, h) from a .npy file (no pickles) or a JSON list of rows."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"--boxes-anchors {path}: no such file")
    if file.stat().st_size > MAX_ANCHOR_FILE:
        raise InputError(f"--boxes-anchors {path}: larger than 16 MB")
    try:
        if file.suffix == ".npy":
            anchors = np.load(file, allow_pickle=False)
        else:
            anchors = np.asarray(json.loads(file.read_text(encoding="utf-8")), np.float64)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"--boxes-anchors {path}: not a .npy array or JSON rows ({exc})") from None
    anchors = np.asarray(anchors, np.float64)
    if anchors.ndim != 2 or anchors.shape[1] != 4 or not np.isfinite(anchors).all():
        raise InputError(f"--boxes-anchors {path}: expected finite [A, 4] rows cx, cy, w, h")
    return anchors
