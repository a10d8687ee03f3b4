"""Data movement: Transpose (free: it only relabels the stored perm), Reshape, Flatten, Squeeze,
Unsqueeze, Concat, Split, Slice, Pad, Expand, Tile, Gather, ConstantOfShape.

Operators that keep the element order of each axis (Concat, Split, Slice, Pad, Expand, Tile,
Squeeze, Unsqueeze) work in the input's perm with their axes mapped; Reshape and Flatten need the
logical (row-major) byte order.
"""

from __future__ import annotations

import math

import numpy as np
from onnx import numpy_helper

from edgesal.converters.tflite import layout
from edgesal.converters.tflite.context import Lowering
from edgesal.converters.tflite.ops.elementwise import broadcast_perm
from edgesal.converters.tflite.ops.registry import attrs, inputs, lowers
from edgesal.graph.idioms import interleave


def logical(ctx: Lowering, name: str) -> int:
    """A tensor whose bytes are ``name`` in row-major logical order (any stored shape)."""
    shape, perm = ctx.shape(name), ctx.perm(name)
    if not ctx.is_const(name) and layout.same_bytes(shape, perm, layout.identity(len(shape))):
        return ctx.held(name)[0]
    return ctx.tensor(name, layout.identity(len(shape)))


def reshape_to(ctx: Lowering, node, source: int) -> None:
    out = node.output[0]
    shape = ctx.shape(out)
    ctx.emit("RESHAPE", [source, ctx.ints(shape)], [ctx.output(out)])


@lowers("Reshape", "Flatten")
def reshape(ctx: Lowering, node) -> None:
    """RESHAPE of the row-major bytes (a TRANSPOSE first when stored in another order); the
    last Reshape of an interleave (:mod:`edgesal.graph.idioms.interleave`) is done on the
    phases as they are stored, so NHWC gradients stay NHWC."""
    found = (
        interleave.match(node.output[0], ctx.producer, ctx.value, ctx.shape)
        if node.op_type == "Reshape"
        else None
    )
    if found is not None:
        _stored_interleave(ctx, node.output[0], found)
        return
    reshape_to(ctx, node, logical(ctx, node.input[0]))


def _stored_interleave(ctx: Lowering, out: str, found: interleave.Interleave) -> None:
    """RESHAPE each phase to [A, Q, 1, B] of its stored shape, PAD the missing phases, one
    CONCATENATION on axis 2 and a RESHAPE back: the interleave in storage order."""
    first = found.pieces[0][0]
    perm = ctx.perm(first) if not ctx.is_const(first) else layout.identity(len(ctx.shape(first)))
    stored = layout.physical(ctx.shape(first), perm)
    j = layout.axis_of(perm, found.axis)
    view = [math.prod(stored[:j]), stored[j], 1, math.prod(stored[j + 1 :])]
    dtype = ctx.dtype(first)
    pieces = []
    for phase, before, after in found.pieces:
        t = ctx.op("RESHAPE", [ctx.tensor(phase, perm), ctx.ints(view)], view, dtype)
        if before or after:
            pads = np.array([[0, 0], [0, 0], [before, after], [0, 0]], np.int32)
            padded = [view[0], view[1], 1 + before + after, view[3]]
            t = ctx.op("PAD", [t, ctx.const(pads)], padded, dtype)
        pieces.append(t)
    merged_shape = [view[0], view[1], found.stride, view[3]]
    merged = pieces[0]
    if len(pieces) > 1:
        merged = ctx.op(
            "CONCATENATION",
            pieces,
            merged_shape,
            dtype,
            "ConcatenationOptions",
            axis=2,
            fused_activation_function="NONE",
        )
    result = list(stored)
    result[j] *= found.stride
    ctx.emit("RESHAPE", [merged, ctx.ints(result)], [ctx.output(out, perm)])


@lowers("Squeeze", "Unsqueeze")
def squeeze(ctx: Lowering, node) -> None:
    """Adds or removes size-1 axes: the bytes stay, the stored perm gains or loses the axes."""
    x = node.input[0]
    names = inputs(node)
    given = ctx.const_ints(names[1], "axes") if len(names) > 1 else attrs(node).get("axes")
    in_rank, out_rank = len(ctx.shape(x)), len(ctx.shape(node.output[0]))
    if node.op_type == "Squeeze":
        if given is None:
            given = [i for i, d in enumerate(ctx.shape(x)) if d == 1]
        perm = layout.dropped(ctx.perm(x), [a % in_rank for a in given])
    else:
        perm = layout.inserted(ctx.perm(x), [a % out_rank for a in given])
    stored = layout.physical(ctx.shape(node.output[0]), perm)
    ctx.emit("RESHAPE", [ctx.tensor(x), ctx.ints(stored)], [ctx.output(node.output[0], perm)])


@lowers("Transpose")
def transpose(ctx: Lowering, node) -> None:
    """No operator: the output is the input's storage read with perm Q[j] = T^-1[P[j]]."""
    x = node.input[0]
    rank = len(ctx.shape(x))
    t = attrs(node).get("perm") or list(reversed(range(rank)))
    t_inv = layout.inverse(t)
    index = ctx.tensor(x)
    ctx.hold(node.output[0], index, tuple(t_inv[p] for p in ctx.perm(x)))


@lowers("Concat")
def concat(ctx: Lowering, node) -> None:
    """CONCATENATION on the stored axis."""
    names = [n for n in node.input if n and math.prod(ctx.shape(n)) > 0]
    perm, rank = broadcast_perm(ctx, names)
    axis = layout.axis_of(perm, int(attrs(node)["axis"]) % rank)
    tensors = [ctx.tensor(n, perm) for n in names]
    out = ctx.output(node.output[0], perm)
    ctx.emit(
        "CONCATENATION",
        tensors,
        [out],
        "ConcatenationOptions",
        axis=axis,
        fused_activation_function="NONE",
    )


@lowers("Split")
def split(ctx: Lowering, node) -> None:
    """SPLIT (equal parts) or SPLIT_V on the stored axis."""
    x = node.input[0]
    rank = len(ctx.shape(x))
    logical_axis = int(attrs(node).get("axis", 0)) % rank
    sizes = [ctx.shape(o)[logical_axis] for o in node.output]
    perm = ctx.perm(x)
    axis = ctx.const(np.asarray(layout.axis_of(perm, logical_axis), np.int32))
    outs = [ctx.output(o, perm) for o in node.output]
    if len(set(sizes)) == 1:
        ctx.emit("SPLIT", [axis, ctx.tensor(x)], outs, "SplitOptions", num_splits=len(outs))
    else:
        splits = ctx.ints(sizes)
        ctx.emit(
            "SPLIT_V", [ctx.tensor(x), splits, axis], outs, "SplitVOptions", num_splits=len(outs)
        )


@lowers("Slice")
def slice_(ctx: Lowering, node) -> None:
    """SLICE for unit steps, else STRIDED_SLICE (end_mask where a negative step runs past 0)."""
    names = inputs(node)
    x = names[0]
    shape = ctx.shape(x)
    rank = len(shape)
    if not ctx.is_const(names[1]):
        _runtime_slice(ctx, node, names)
        return
    starts = ctx.const_ints(names[1], "starts")
    ends = ctx.const_ints(names[2], "ends")
    axes = ctx.const_ints(names[3], "axes") if len(names) > 3 and names[3] else range(len(starts))
    steps = ctx.const_ints(names[4], "steps") if len(names) > 4 and names[4] else [1] * len(starts)
    spans = [(0, d, 1) for d in shape]
    for a, s, e, st in zip(axes, starts, ends, steps, strict=True):
        a %= rank
        spans[a] = slice(s, e, st).indices(shape[a])
    perm = ctx.perm(x)
    stored = [spans[p] for p in perm]
    out = ctx.output(node.output[0], perm)
    if all(st == 1 for _, _, st in stored):
        begin = [s for s, _, _ in stored]
        size = [max(e - s, 0) for s, e, _ in stored]
        ctx.emit("SLICE", [ctx.tensor(x), ctx.ints(begin), ctx.ints(size)], [out])
        return
    end_mask = sum(1 << i for i, (_, e, st) in enumerate(stored) if st < 0 and e < 0)
    ctx.emit(
        "STRIDED_SLICE",
        [
            ctx.tensor(x),
            ctx.ints([s for s, _, _ in stored]),
            ctx.ints([max(e, 0) for _, e, _ in stored]),
            ctx.ints([st for _, _, st in stored]),
        ],
        [out],
        "StridedSliceOptions",
        begin_mask=0,
        end_mask=end_mask,
        ellipsis_mask=0,
        new_axis_mask=0,
        shrink_axis_mask=0,
    )


def _runtime_slice(ctx: Lowering, node, names: list[str]) -> None:
    """SLICE with run-time starts (a window placed at run time) and the static output size.

    The starts must already lie inside the tensor (no ONNX clamping or negative wrap at run
    time; edgesal's ROI graphs clamp the window themselves). The begin vector is gathered into
    stored order from the starts and a trailing 0 for the axes not sliced.
    """
    x = names[0]
    rank = len(ctx.shape(x))
    count = ctx.shape(names[1])[0]
    axes = ctx.const_ints(names[3], "axes") if len(names) > 3 and names[3] else range(count)
    axes = [a % rank for a in axes]
    if len(names) > 4 and names[4] and any(v != 1 for v in ctx.const_ints(names[4], "steps")):
        raise ctx.fail("steps other than 1 need constant starts")
    perm = ctx.perm(x)
    starts = ctx.cast(ctx.tensor(names[1], (0,)), np.int32)
    padded = ctx.op(
        "CONCATENATION",
        [starts, ctx.ints([0])],
        [count + 1],
        np.int32,
        "ConcatenationOptions",
        axis=0,
        fused_activation_function="NONE",
    )
    order = [axes.index(p) if p in axes else count for p in perm]
    begin = ctx.op("GATHER", [padded, ctx.ints(order)], [rank], np.int32, "GatherOptions", axis=0)
    size = layout.physical(ctx.shape(node.output[0]), perm)
    ctx.emit("SLICE", [ctx.tensor(x), begin, ctx.ints(size)], [ctx.output(node.output[0], perm)])


@lowers("Pad")
def pad(ctx: Lowering, node) -> None:
    """PAD / PADV2 / MIRROR_PAD(REFLECT) in the input's perm; negative pads SLICE first."""
    names = inputs(node)
    a = attrs(node)
    x = names[0]
    rank = len(ctx.shape(x))
    if len(names) > 1 and not ctx.is_const(names[1]):
        _runtime_pad(ctx, node, names)
        return
    pads = ctx.const_ints(names[1], "pads") if len(names) > 1 else list(a["pads"])
    axes = list(range(rank))
    if len(names) > 3 and names[3]:
        axes = [v % rank for v in ctx.const_ints(names[3], "axes")]
    per_axis = [(0, 0)] * rank
    for i, ax in enumerate(axes):
        per_axis[ax] = (pads[i], pads[i + len(axes)])
    value = 0.0
    if len(names) > 2 and names[2]:
        value = (
            float(np.asarray(ctx.value(names[2])).ravel()[0]) if ctx.is_const(names[2]) else None
        )
        if value is None:
            raise ctx.fail(f"its constant_value input '{names[2]}' must be a constant")
    value = float(a.get("value", value))
    mode = a.get("mode", "constant")
    perm = ctx.perm(x)
    stored = [per_axis[p] for p in perm]
    t = ctx.tensor(x)
    dtype = ctx.dtype(x)
    if any(b < 0 or e < 0 for b, e in stored):
        shape = ctx.physical_shape(t)
        begin = [max(-b, 0) for b, _ in stored]
        size = [d - max(-b, 0) - max(-e, 0) for d, (b, e) in zip(shape, stored, strict=True)]
        t = ctx.op("SLICE", [t, ctx.ints(begin), ctx.ints(size)], size, dtype)
        stored = [(max(b, 0), max(e, 0)) for b, e in stored]
    out = ctx.output(node.output[0], perm)
    paddings = ctx.const(np.asarray(stored, dtype=np.int32).reshape(rank, 2))
    if mode == "constant":
        if value == 0.0:
            ctx.emit("PAD", [t, paddings], [out])
        else:
            ctx.emit("PADV2", [t, paddings, ctx.const(np.asarray([value], dtype))], [out])
    elif mode == "reflect":
        ctx.emit("MIRROR_PAD", [t, paddings], [out], "MirrorPadOptions", mode="REFLECT")
    else:
        raise ctx.fail(f"mode '{mode}' has no TFLite builtin")


def _runtime_pad(ctx: Lowering, node, names: list[str]) -> None:
    """PAD with run-time pads (non-negative, every axis): the ONNX vector [begins, ends] is
    gathered into TFLite's [rank, 2] paddings in stored order."""
    a = attrs(node)
    x = names[0]
    rank = len(ctx.shape(x))
    if (
        a.get("mode", "constant") != "constant"
        or (len(names) > 2 and names[2])
        or (len(names) > 3 and names[3])
    ):
        raise ctx.fail("run-time pads are supported for zero constant padding of every axis")
    perm = ctx.perm(x)
    pads = ctx.cast(ctx.tensor(names[1], (0,)), np.int32)
    order = [i for p in perm for i in (p, p + rank)]
    stored = ctx.op(
        "GATHER", [pads, ctx.ints(order)], [2 * rank], np.int32, "GatherOptions", axis=0
    )
    paddings = ctx.reshape(stored, [rank, 2])
    ctx.emit("PAD", [ctx.tensor(x), paddings], [ctx.output(node.output[0], perm)])


@lowers("Expand")
def expand(ctx: Lowering, node) -> None:
    """MUL by ones over the grown axes (floats: exact, on XNNPACK), else BROADCAST_TO.

    BROADCAST_TO runs outside XNNPACK and took ~10x the MUL on MobileNetV2's pooling gradient.
    """
    x, out_name = node.input[0], node.output[0]
    out_shape = ctx.shape(out_name)
    if tuple(out_shape) == tuple(ctx.shape(x)):
        ctx.alias(out_name, x)
        return
    perm = layout.lifted(ctx.perm(x), len(out_shape))
    source = ctx.tensor(x, perm, len(out_shape))
    stored = layout.physical(out_shape, perm)
    out = ctx.output(out_name, perm)
    if ctx.dtype(x).kind == "f":
        have = (1,) * (len(stored) - len(ctx.physical_shape(source))) + ctx.physical_shape(source)
        grown = [o if h != o else 1 for h, o in zip(have, stored, strict=True)]
        ctx.emit("MUL", [source, ctx.const(np.ones(grown, ctx.dtype(x)))], [out])
    else:
        ctx.emit("BROADCAST_TO", [source, ctx.ints(stored)], [out])


@lowers("Tile")
def tile(ctx: Lowering, node) -> None:
    """TILE with the repeats in stored order."""
    x = node.input[0]
    repeats = ctx.const_ints(node.input[1], "repeats")
    perm = ctx.perm(x)
    stored = [repeats[p] for p in perm]
    ctx.emit("TILE", [ctx.tensor(x), ctx.ints(stored)], [ctx.output(node.output[0], perm)])


@lowers("Gather")
def gather(ctx: Lowering, node) -> None:
    """GATHER along the stored axis; scalar or 1-D indices keep the perm, others need identity."""
    x, indices = node.input[:2]
    rank = len(ctx.shape(x))
    axis = int(attrs(node).get("axis", 0)) % rank
    value = ctx.value(indices)
    if value is not None:
        value = np.asarray(value) % ctx.shape(x)[axis]
        index = ctx.const(value.astype(np.int32))
    else:
        index = ctx.tensor(indices, layout.identity(len(ctx.shape(indices))))
    index_rank = len(ctx.shape(indices))
    perm = ctx.perm(x) if index_rank <= 1 else layout.identity(rank)
    out_perm = layout.dropped(perm, [axis]) if index_rank == 0 else perm
    ctx.emit(
        "GATHER",
        [ctx.tensor(x, perm), index],
        [ctx.output(node.output[0], out_perm)],
        "GatherOptions",
        axis=layout.axis_of(perm, axis),
    )


@lowers("ConstantOfShape")
def constant_of_shape(ctx: Lowering, node) -> None:
    """FILL: a large constant not worth storing in the file."""
    a = attrs(node)
    value = numpy_helper.to_array(a["value"]) if "value" in a else np.zeros(1, np.float32)
    shape = ctx.shape(node.output[0])
    fill = ctx.const(np.asarray(value).reshape(()))
    ctx.emit("FILL", [ctx.ints(shape), fill], [ctx.output(node.output[0])])
