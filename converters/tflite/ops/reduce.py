"""Reductions, ArgMax/ArgMin, TopK and Softmax: reductions run in the input's perm with their axes
mapped; TopK and Softmax need their axis stored last."""

from __future__ import annotations

import numpy as np

from edgesal.converters.tflite import layout
from edgesal.converters.tflite.context import Lowering
from edgesal.converters.tflite.ops.registry import attrs, inputs, lowers

REDUCERS = {
    "ReduceSum": "SUM",
    "ReduceMean": "MEAN",
    "ReduceMax": "REDUCE_MAX",
    "ReduceMin": "REDUCE_MIN",
    "ReduceProd": "REDUCE_PROD",
    "ReduceL1": "SUM",
    "ReduceL2": "SUM",
    "ReduceSumSquare": "SUM",
    "ReduceLogSumExp": "SUM",
}


def reduce_axes(ctx: Lowering, node) -> list[int] | None:
    """The logical axes reduced (None: the node is an identity by noop_with_empty_axes)."""
    names = inputs(node)
    a = attrs(node)
    rank = len(ctx.shape(node.input[0]))
    if len(names) > 1 and names[1]:
        axes = ctx.const_ints(names[1], "axes")
    else:
        axes = list(a.get("axes", []))
    if not axes:
        return None if a.get("noop_with_empty_axes", 0) else list(range(rank))
    return sorted({int(v) % rank for v in axes})


@lowers(*REDUCERS)
def reduce(ctx: Lowering, node) -> None:
    """One TFLite reducer, with ABS / square before and SQRT / EXP-LOG around where needed."""
    x = node.input[0]
    axes = reduce_axes(ctx, node)
    if axes is None:  # nothing reduced: ReduceL1 and ReduceL2 give |x|, ReduceSumSquare x^2
        _elementwise_only(ctx, node)
        return
    keep = bool(attrs(node).get("keepdims", 1))
    perm, dtype = ctx.perm(x), ctx.dtype(x)
    stored_shape = layout.physical(ctx.shape(x), perm)
    t = ctx.tensor(x)
    op = node.op_type
    if op == "ReduceL1":
        t = ctx.op("ABS", [t], stored_shape, dtype)
    elif op in ("ReduceL2", "ReduceSumSquare"):
        t = ctx.op("MUL", [t, t], stored_shape, dtype)
    elif op == "ReduceLogSumExp":
        t = ctx.op("EXP", [t], stored_shape, dtype)
    out_perm = perm if keep else layout.dropped(perm, axes)
    stored_axes = sorted(layout.axis_of(perm, a) for a in axes)
    reducer = [t, ctx.ints(stored_axes)]
    options = {"options": "ReducerOptions", "keep_dims": keep}
    if op in ("ReduceL2", "ReduceLogSumExp"):
        out_shape = layout.physical(ctx.shape(node.output[0]), out_perm)
        total = ctx.op(REDUCERS[op], reducer, out_shape, dtype, **options)
        final = "SQRT" if op == "ReduceL2" else "LOG"
        ctx.emit(final, [total], [ctx.output(node.output[0], out_perm)])
    else:
        ctx.emit(REDUCERS[op], reducer, [ctx.output(node.output[0], out_perm)], **options)


def _elementwise_only(ctx: Lowering, node) -> None:
    """A reducer with no axes to reduce (noop_with_empty_axes), as onnxruntime computes it."""
    x, out = node.input[0], node.output[0]
    if node.op_type in ("ReduceL1", "ReduceL2"):
        ctx.emit("ABS", [ctx.tensor(x)], [ctx.output(out, ctx.perm(x))])
    elif node.op_type == "ReduceSumSquare":
        t = ctx.tensor(x)
        ctx.emit("MUL", [t, t], [ctx.output(out, ctx.perm(x))])
    else:
        ctx.alias(out, x)


@lowers("ArgMax", "ArgMin")
def arg_max(ctx: Lowering, node) -> None:
    """ARG_MAX/ARG_MIN (first index on ties, as ONNX's default); keepdims re-adds the axis."""
    a = attrs(node)
    if a.get("select_last_index", 0):
        raise ctx.fail("select_last_index=1 is not supported")
    x = node.input[0]
    rank = len(ctx.shape(x))
    axis = int(a.get("axis", 0)) % rank
    perm = ctx.perm(x)
    reduced_perm = layout.dropped(perm, [axis])
    reduced_shape = [d for i, d in enumerate(ctx.shape(x)) if i != axis]
    code = "ARG_MAX" if node.op_type == "ArgMax" else "ARG_MIN"
    option_table = "ArgMaxOptions" if code == "ARG_MAX" else "ArgMinOptions"
    dtype = ctx.dtype(node.output[0])
    stored_axis = ctx.const(np.asarray([layout.axis_of(perm, axis)], np.int32))
    inputs_ = [ctx.tensor(x), stored_axis]
    type_name = {np.dtype(np.int64): "INT64", np.dtype(np.int32): "INT32"}[dtype]
    if not a.get("keepdims", 1):
        out = ctx.output(node.output[0], reduced_perm)
        ctx.emit(code, inputs_, [out], option_table, output_type=type_name)
        return
    stored = layout.physical(reduced_shape, reduced_perm)
    index = ctx.op(code, inputs_, stored, dtype, option_table, output_type=type_name)
    kept = layout.inserted(reduced_perm, [axis])
    shape = layout.physical(ctx.shape(node.output[0]), kept)
    ctx.emit("RESHAPE", [index, ctx.ints(shape)], [ctx.output(node.output[0], kept)])


def _axis_last(ctx: Lowering, x: str, axis: int) -> tuple[int, ...]:
    """A perm storing logical ``axis`` last, staying close to how ``x`` is stored."""
    perm = ctx.perm(x)
    return tuple(p for p in perm if p != axis) + (axis,)


@lowers("TopK")
def top_k(ctx: Lowering, node) -> None:
    """TOPK_V2 on the last stored axis; largest=0 negates around it; indices cast to int64."""
    a = attrs(node)
    x = node.input[0]
    rank = len(ctx.shape(x))
    axis = int(a.get("axis", -1)) % rank
    k = ctx.const_ints(node.input[1], "K")[0]
    if not a.get("sorted", 1):
        raise ctx.fail("sorted=0 is not supported")
    perm = _axis_last(ctx, x, axis)
    t = ctx.tensor(x, perm)
    dtype = ctx.dtype(x)
    largest = bool(a.get("largest", 1))
    if not largest:
        t = ctx.op("NEG", [t], ctx.physical_shape(t), dtype)
    values_shape = layout.physical(ctx.shape(node.output[0]), perm)
    values = ctx.temp(values_shape, dtype, "topk_values")
    indices = ctx.temp(values_shape, np.int32, "topk_indices")
    ctx.emit("TOPK_V2", [t, ctx.const(np.asarray([k], np.int32))], [values, indices])
    if largest:
        ctx.hold(node.output[0], values, perm)
    else:
        ctx.emit("NEG", [values], [ctx.output(node.output[0], perm)])
    if len(node.output) > 1 and node.output[1]:
        out = ctx.output(node.output[1], perm)
        ctx.emit("CAST", [indices], [out])


@lowers("Softmax", "LogSoftmax")
def softmax(ctx: Lowering, node) -> None:
    """SOFTMAX / LOG_SOFTMAX with the axis stored last."""
    x = node.input[0]
    rank = len(ctx.shape(x))
    axis = int(attrs(node).get("axis", -1)) % rank
    perm = _axis_last(ctx, x, axis)
    out = ctx.output(node.output[0], perm)
    if node.op_type == "Softmax":
        ctx.emit("SOFTMAX", [ctx.tensor(x, perm)], [out], "SoftmaxOptions", beta=1.0)
    else:
        ctx.emit("LOG_SOFTMAX", [ctx.tensor(x, perm)], [out])
