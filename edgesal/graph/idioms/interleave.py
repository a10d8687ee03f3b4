"""Interleave: out[..., q*s + r, ...] = phases[r][..., q, ...] along one axis, zeros for a
missing phase.

The gradients of strided Slices and of pooling (``edgesal/autodiff/rules/shape.py``,
``pooling.py``) put their pieces back with it, in forward operators only:

    Reshape(Concat(Reshape(phase_r, [A, Q, 1, B]) | Pad(that, zeros on axis 2)..., axis=2), out)

with A the product of the axes before ``axis`` and B of those after. :func:`emit` writes it;
:func:`match` recognizes it for the TFLite lowering, which performs the same steps on the
tensors as they are stored (NHWC) instead of first transposing them back to NCHW
(``converters/tflite/ops/shape.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from edgesal.graph.builder import Builder


def emit(b: Builder, phases: Sequence[str | None], shape: Sequence[int], axis: int) -> str:
    """The interleave of ``phases`` (each of logical ``shape``) along ``axis``."""
    stride = len(phases)
    view = [math.prod(shape[:axis]), shape[axis], 1, math.prod(shape[axis + 1 :])]
    present = [r for r, phase in enumerate(phases) if phase is not None]
    pieces = []
    for i, r in enumerate(present):
        before = r if i == 0 else 0
        after = (present[i + 1] if i + 1 < len(present) else stride) - r - 1
        piece = b.Reshape(phases[r], b.ints(view))
        if before or after:
            piece = b.Pad(piece, b.ints([0, 0, before, 0, 0, 0, after, 0]))
        pieces.append(piece)
    merged = pieces[0] if len(pieces) == 1 else b.Concat(*pieces, axis=2)
    out_shape = list(shape)
    out_shape[axis] *= stride
    return b.Reshape(merged, b.ints(out_shape))


@dataclass(frozen=True)
class Interleave:
    """A recognized interleave: ``pieces`` are (phase tensor, zeros before, zeros after) in
    order along ``axis`` of the phases' logical shape, ``stride`` phases per output step."""

    pieces: tuple[tuple[str, int, int], ...]
    axis: int
    stride: int


def match(
    name: str,
    producer: Callable[[str], onnx.NodeProto | None],
    value: Callable[[str], np.ndarray | None],
    shape: Callable[[str], tuple[int, ...]],
) -> Interleave | None:
    """The interleave whose final Reshape outputs ``name``, or None."""
    final = producer(name)
    if final is None or final.op_type != "Reshape" or final.domain:
        return None
    merged = producer(final.input[0])
    if merged is None:
        return None
    if merged.op_type == "Concat" and not merged.domain and _axis(merged) == 2:
        tops = list(merged.input)
    else:
        tops = [final.input[0]]
    pieces, view = [], None
    for top in tops:
        piece = _piece(top, producer, value)
        if piece is None:
            return None
        source, before, after, this_view = piece
        if view is not None and this_view != view:
            return None
        view = this_view
        pieces.append((source, before, after))
    stride = sum(1 + before + after for _, before, after in pieces)
    phase = shape(pieces[0][0])
    if any(shape(p) != phase for p, _, _ in pieces):
        return None
    axes = [
        a
        for a in range(len(phase))
        if [math.prod(phase[:a]), phase[a], 1, math.prod(phase[a + 1 :])] == view
    ]
    if len(axes) != 1:
        return None
    out = list(phase)
    out[axes[0]] *= stride
    if tuple(shape(name)) != tuple(out):
        return None
    return Interleave(tuple(pieces), axes[0], stride)


def _piece(top: str, producer, value) -> tuple[str, int, int, list[int]] | None:
    """(phase, zeros before, zeros after, view) of one Concat input."""
    node = producer(top)
    before = after = 0
    if node is not None and node.op_type == "Pad" and not node.domain:
        pads = value(node.input[1]) if len(node.input) > 1 else None
        mode = next((a.s for a in node.attribute if a.name == "mode"), b"constant")
        extra = [n for n in node.input[2:] if n]
        if pads is None or mode != b"constant" or extra or len(pads) != 8:
            return None
        pads = [int(p) for p in pads]
        if any(pads[i] for i in (0, 1, 3, 4, 5, 7)) or min(pads) < 0:
            return None
        before, after = pads[2], pads[6]
        node = producer(node.input[0])
    if node is None or node.op_type != "Reshape" or node.domain:
        return None
    view = value(node.input[1])
    if view is None or len(view) != 4 or int(view[2]) != 1:
        return None
    return node.input[0], before, after, [int(v) for v in view]


def _axis(node: onnx.NodeProto) -> int | None:
    return next((a.i for a in node.attribute if a.name == "axis"), None)
