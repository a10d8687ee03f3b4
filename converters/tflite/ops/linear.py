"""Gemm and MatMul -> FULLY_CONNECTED when one operand is a constant matrix (either side: a
constant left operand is handled on the transposed problem, whose transpose is a free relabel),
else BATCH_MATMUL; OneHot -> ONE_HOT. A Gemm of a one-hot ArgMax row with a constant (the
gradient of a classifier at its top class) is a GATHER of that row: it reads one row of the
weights instead of all of them (~1.5% of the zoo models' vanilla saliency time)."""

from __future__ import annotations

import numpy as np

from edgesal.converters.tflite import layout
from edgesal.converters.tflite.context import Lowering
from edgesal.converters.tflite.ops.registry import attrs, inputs, lowers

_FC = {"fused_activation_function": "NONE", "weights_format": 0}


def _fully_connected(ctx, x: int, weight: np.ndarray, bias, out_shape, dtype, keep: bool) -> int:
    """x @ weight.T + bias over the last axis of stored ``x``."""
    bias_t = ctx.const(np.asarray(bias, dtype)) if bias is not None else -1
    return ctx.op(
        "FULLY_CONNECTED",
        [x, ctx.const(np.ascontiguousarray(weight.astype(dtype))), bias_t],
        out_shape,
        dtype,
        "FullyConnectedOptions",
        keep_num_dims=keep,
        **_FC,
    )


@lowers("Gemm")
def gemm(ctx: Lowering, node) -> None:
    """FULLY_CONNECTED with a constant operand, else BATCH_MATMUL; Y = alpha A' B' + beta C.
    A one-hot ArgMax row times a constant is a GATHER of that row."""
    a_name, b_name = node.input[:2]
    names = inputs(node)
    c_name = names[2] if len(names) > 2 and names[2] else None
    at = attrs(node)
    alpha, beta = float(at.get("alpha", 1.0)), float(at.get("beta", 1.0))
    trans_a, trans_b = bool(at.get("transA", 0)), bool(at.get("transB", 0))
    out_name = node.output[0]
    m, n = ctx.shape(out_name)
    dtype = ctx.dtype(out_name)
    a_val, b_val = ctx.value(a_name), ctx.value(b_name)
    c_val = ctx.value(c_name) if c_name else None
    bias = None
    if c_name is None:
        pass
    elif c_val is not None and np.asarray(c_val).size in (1, n) and np.asarray(c_val).ndim <= 2:
        bias = np.broadcast_to(beta * np.asarray(c_val, np.float64).reshape(-1), (n,))
    rows = _argmax_one_hot(ctx, a_name) if b_val is not None and not trans_a else None
    if rows is not None:  # one-hot rows pick rows of B': a GATHER
        table = alpha * (np.asarray(b_val).T if trans_b else np.asarray(b_val))
        y, perm = _gather_rows(ctx, table.astype(dtype), rows, (m, n), dtype), (0, 1)
        if bias is not None:
            y = ctx.op("ADD", [y, ctx.const(bias.astype(dtype))], (m, n), dtype)
            bias = None
    elif b_val is not None:  # Y = A' @ W.T with W = alpha * B'^T
        weight = alpha * (np.asarray(b_val) if trans_b else np.asarray(b_val).T)
        x = ctx.tensor(a_name, (1, 0) if trans_a else (0, 1))
        y, perm = _fully_connected(ctx, x, weight, bias, (m, n), dtype, False), (0, 1)
    elif a_val is not None:  # Y^T = B'^T @ A'^T: FC of B'^T with weight alpha * A'
        weight = alpha * (np.asarray(a_val).T if trans_a else np.asarray(a_val))
        x = ctx.tensor(b_name, (0, 1) if trans_b else (1, 0))
        y_t = _fully_connected(ctx, x, weight, None, (n, m), dtype, False)
        y, perm = y_t, (1, 0)
        if bias is not None:
            y = ctx.op("ADD", [y, ctx.const(bias.reshape(n, 1).astype(dtype))], (n, m), dtype)
            bias = None
    else:
        lhs = ctx.tensor(a_name, (0, 1))
        rhs = ctx.tensor(b_name, (0, 1))
        y = ctx.op(
            "BATCH_MATMUL",
            [lhs, rhs],
            (m, n),
            dtype,
            "BatchMatMulOptions",
            adj_x=trans_a,
            adj_y=trans_b,
        )
        perm = (0, 1)
        if alpha != 1.0:
            y = ctx.op("MUL", [y, ctx.const(np.asarray(alpha, dtype))], (m, n), dtype)
    if c_name is not None and (bias is None and (c_val is None or c_val.size not in (1, n))):
        if perm != (0, 1):
            y, perm = ctx.transpose(y, (1, 0)), (0, 1)
        c = (
            ctx.tensor(c_name, (0, 1), 2)
            if c_val is None
            else ctx.const((beta * np.asarray(c_val)).astype(dtype))
        )
        if c_val is None and beta != 1.0:
            c = ctx.op("MUL", [c, ctx.const(np.asarray(beta, dtype))], ctx.physical_shape(c), dtype)
        y = ctx.op("ADD", [y, c], (m, n), dtype)
    ctx.hold(out_name, y, perm)


def _argmax_one_hot(ctx: Lowering, name: str) -> str | None:
    """The indices of ``name`` when it is [m, K] OneHot(ArgMax(..), K, [0, 1]) on its last axis
    (through Reshape/Identity keeping that shape), else None. ArgMax indices are in range, so
    the product with a matrix is exactly a row lookup."""
    node, shape = ctx.producer(name), ctx.shape(name)
    while node is not None and node.op_type in ("Reshape", "Identity"):
        if ctx.shape(node.input[0]) != shape:
            return None
        node = ctx.producer(node.input[0])
    if node is None or node.op_type != "OneHot" or len(shape) != 2:
        return None
    indices, depth, values = node.input
    source = ctx.producer(indices)
    depth_v, off_on = ctx.value(depth), ctx.value(values)
    if source is None or source.op_type != "ArgMax" or depth_v is None or off_on is None:
        return None
    axis = int(attrs(source).get("axis", 0)) % len(ctx.shape(source.input[0]))
    if int(attrs(node).get("axis", -1)) not in (-1, 1) or ctx.shape(indices) != shape[:1]:
        return None
    if (
        list(np.asarray(off_on).ravel()) != [0, 1]
        or int(np.asarray(depth_v).ravel()[0]) != shape[1]
    ):
        return None
    return indices if ctx.shape(source.input[0])[axis] == shape[1] else None


def _gather_rows(ctx: Lowering, table: np.ndarray, indices: str, out_shape, dtype) -> int:
    """GATHER of rows ``indices`` of constant ``table`` [K, N]."""
    return ctx.op(
        "GATHER",
        [ctx.const(np.ascontiguousarray(table)), ctx.tensor(indices, (0,))],
        out_shape,
        dtype,
        "GatherOptions",
        axis=0,
    )


@lowers("MatMul")
def matmul(ctx: Lowering, node) -> None:
    """FULLY_CONNECTED (keep_num_dims) for a constant 2-D operand, else BATCH_MATMUL."""
    a_name, b_name = node.input[:2]
    out_name = node.output[0]
    a_shape, b_shape = ctx.shape(a_name), ctx.shape(b_name)
    if len(a_shape) < 2 or len(b_shape) < 2:
        raise ctx.fail("1-D MatMul operands are not supported")
    out_shape = ctx.shape(out_name)
    rank = len(out_shape)
    dtype = ctx.dtype(out_name)
    a_val, b_val = ctx.value(a_name), ctx.value(b_name)
    if b_val is not None and np.asarray(b_val).ndim == 2 and len(a_shape) == rank:
        perm = ctx.perm(a_name)
        if perm[-1] != rank - 1:
            perm = layout.identity(rank)
        stored = layout.physical(out_shape, perm)
        x = ctx.tensor(a_name, perm)
        y = _fully_connected(ctx, x, np.asarray(b_val).T, None, stored, dtype, True)
        ctx.hold(out_name, y, perm)
        return
    if a_val is not None and np.asarray(a_val).ndim == 2 and len(b_shape) == rank:
        swap = (*range(rank - 2), rank - 1, rank - 2)  # store B^T and Y^T
        x = ctx.tensor(b_name, swap)
        stored = layout.physical(out_shape, swap)
        y = _fully_connected(ctx, x, np.asarray(a_val), None, stored, dtype, True)
        ctx.hold(out_name, y, swap)
        return
    lhs = ctx.tensor(a_name, layout.identity(len(a_shape)))
    rhs = ctx.tensor(b_name, layout.identity(len(b_shape)))
    out = ctx.output(out_name)
    ctx.emit("BATCH_MATMUL", [lhs, rhs], [out], "BatchMatMulOptions", adj_x=False, adj_y=False)


@lowers("OneHot")
def one_hot(ctx: Lowering, node) -> None:
    """ONE_HOT; out-of-range indices give all-off rows (ONNX would wrap negative ones)."""
    indices, depth, values = node.input
    rank = len(ctx.shape(node.output[0]))
    axis = int(attrs(node).get("axis", -1)) % rank
    off_on = ctx.value(values)
    if off_on is None:
        raise ctx.fail(f"its values input '{values}' must be a constant")
    depth_v = ctx.const_ints(depth, "depth")[0]
    dtype = ctx.dtype(node.output[0])
    idx = ctx.tensor(indices, layout.identity(len(ctx.shape(indices))))
    ctx.emit(
        "ONE_HOT",
        [
            idx,
            ctx.const(np.asarray(depth_v, np.int32)),
            ctx.const(np.asarray(off_on[1], dtype)),
            ctx.const(np.asarray(off_on[0], dtype)),
        ],
        [ctx.output(node.output[0])],
        "OneHotOptions",
        axis=axis,
    )
