"""Elementwise operators: they run in whatever layout their inputs are stored in.

The output perm is the one that needs the fewest transposed elements among the run-time inputs
(NHWC preferred on ties for rank 4, so convolution outputs stay put); constants are stored in that
perm for free, and TFLite's numpy broadcasting handles the rank differences.
"""

from __future__ import annotations

import math

import numpy as np

from edgesal.converters.tflite import layout
from edgesal.converters.tflite.context import Lowering
from edgesal.converters.tflite.layout import Perm
from edgesal.converters.tflite.ops.masks import float_mask
from edgesal.converters.tflite.ops.registry import attrs, inputs, lowers

BINARY = {
    "Add": "ADD",
    "Sub": "SUB",
    "Mul": "MUL",
    "Div": "DIV",
    "Pow": "POW",
    "Greater": "GREATER",
    "Less": "LESS",
    "Equal": "EQUAL",
    "GreaterOrEqual": "GREATER_EQUAL",
    "LessOrEqual": "LESS_EQUAL",
    "And": "LOGICAL_AND",
    "Or": "LOGICAL_OR",
    "Xor": "NOT_EQUAL",
    "PRelu": "PRELU",
}
UNARY = {
    "Relu": "RELU",
    "Sigmoid": "LOGISTIC",
    "Tanh": "TANH",
    "Exp": "EXP",
    "Log": "LOG",
    "Sqrt": "SQRT",
    "Abs": "ABS",
    "Neg": "NEG",
    "Floor": "FLOOR",
    "Ceil": "CEIL",
    "Round": "ROUND",
    "Sign": "SIGN",
    "Not": "LOGICAL_NOT",
    "Sin": "SIN",
    "Cos": "COS",
    "HardSwish": "HARD_SWISH",
}
FOLDED = {"Sum": "ADD", "Max": "MAXIMUM", "Min": "MINIMUM", "Mean": "ADD"}


def broadcast_perm(ctx: Lowering, names: list[str]) -> tuple[Perm, int]:
    """(perm, rank) for an elementwise node over ``names``: fewest elements to transpose."""
    rank = max(len(ctx.shape(n)) for n in names if n)
    runtime = [n for n in names if n and not ctx.is_const(n)]

    def full(n):
        return (1,) * (rank - len(ctx.shape(n))) + ctx.shape(n)

    candidates = [layout.lifted(ctx.perm(n), rank) for n in runtime]
    if rank == 4:
        candidates.append(layout.NHWC)
    candidates.append(layout.identity(rank))

    def cost(perm: Perm) -> tuple[int, int]:
        moved = sum(
            math.prod(full(n))
            for n in runtime
            if not layout.same_bytes(full(n), layout.lifted(ctx.perm(n), rank), perm)
        )
        return moved, int(perm != layout.NHWC)

    return min(candidates, key=cost), rank


def emit_elementwise(
    ctx: Lowering, names: list[str], output: str, code: str, options=None, **fields
) -> None:
    perm, rank = broadcast_perm(ctx, names)
    tensors = [ctx.tensor(n, perm, rank) for n in names]
    ctx.emit(code, tensors, [ctx.output(output, perm)], options, **fields)


@lowers(*BINARY, emits=BINARY)
def binary(ctx: Lowering, node) -> None:
    if node.op_type == "Div" and ctx.dtype(node.input[0]).kind in "iu":
        _integer_div(ctx, node)
        return
    if node.op_type == "Pow":
        exponent = ctx.value(node.input[1])
        if exponent is not None and np.all(np.asarray(exponent) == 2):
            emit_elementwise(ctx, [node.input[0]] * 2, node.output[0], "MUL")
            return
        base = ctx.dtype(node.input[0])
        if exponent is not None and np.asarray(exponent).dtype != base and exponent.size == 1:
            _pow_scalar(ctx, node, np.asarray(exponent).astype(base).reshape(()))
            return
    emit_elementwise(ctx, list(node.input), node.output[0], BINARY[node.op_type])


def _pow_scalar(ctx: Lowering, node, exponent: np.ndarray) -> None:
    """POW by a constant scalar exponent cast to the base's type (ONNX allows an int one)."""
    x = node.input[0]
    perm = ctx.perm(x)
    ctx.emit("POW", [ctx.tensor(x), ctx.const(exponent)], [ctx.output(node.output[0], perm)])


def _integer_div(ctx: Lowering, node) -> None:
    """Truncating integer DIV; TFLite divides int32 only, so int64 goes through int32 (index
    arithmetic: values far below 2**31)."""
    names = list(node.input)
    perm, rank = broadcast_perm(ctx, names)
    operands = [ctx.cast(ctx.tensor(n, perm, rank), np.int32) for n in names]
    out_dtype = ctx.dtype(node.output[0])
    if out_dtype == np.int32:
        ctx.emit("DIV", operands, [ctx.output(node.output[0], perm)])
        return
    shape = layout.physical(ctx.shape(node.output[0]), perm)
    quotient = ctx.op("DIV", operands, shape, np.int32)
    ctx.emit("CAST", [quotient], [ctx.output(node.output[0], perm)])


@lowers(*UNARY, emits=UNARY)
def unary(ctx: Lowering, node) -> None:
    emit_elementwise(ctx, [node.input[0]], node.output[0], UNARY[node.op_type])


@lowers(
    *FOLDED,
    emits={k: f"chain of {v}" + (", MUL by 1/n" if k == "Mean" else "") for k, v in FOLDED.items()},
)
def variadic(ctx: Lowering, node) -> None:
    """Sum/Max/Min/Mean of n inputs as a chain of binary ops (Mean: then times 1/n)."""
    names = list(node.input)
    if len(names) == 1:
        ctx.alias(node.output[0], names[0])
        return
    code = FOLDED[node.op_type]
    perm, rank = broadcast_perm(ctx, names)
    shape = layout.physical(ctx.shape(node.output[0]), perm)
    dtype = ctx.dtype(node.output[0])
    acc = ctx.tensor(names[0], perm, rank)
    for n in names[1:-1]:
        acc = ctx.op(code, [acc, ctx.tensor(n, perm, rank)], shape, dtype)
    last = [acc, ctx.tensor(names[-1], perm, rank)]
    if node.op_type == "Mean":
        total = ctx.op(code, last, shape, dtype)
        last, code = [total, ctx.const(np.asarray(1.0 / len(names), dtype=dtype))], "MUL"
    ctx.emit(code, last, [ctx.output(node.output[0], perm)])


@lowers("Where")
def where(ctx: Lowering, node) -> None:
    """SELECT_V2 (numpy broadcasting)."""
    emit_elementwise(ctx, list(node.input), node.output[0], "SELECT_V2")


@lowers("Identity", "Dropout")
def identity(ctx: Lowering, node) -> None:
    """No operator: an alias of the input (Dropout is the identity at inference)."""
    if len(node.output) > 1 and node.output[1]:
        raise ctx.fail("the mask output of Dropout is not supported")
    ctx.alias(node.output[0], node.input[0])


@lowers("Cast")
def cast(ctx: Lowering, node) -> None:
    """CAST; a 0/1 float mask of an interval test becomes float ops (see masks.py)."""
    x = node.input[0]
    if ctx.dtype(node.output[0]) == ctx.dtype(x):
        ctx.alias(node.output[0], x)
        return
    if ctx.dtype(node.output[0]).kind == "f" and float_mask(ctx, x, node.output[0]):
        return
    ctx.emit("CAST", [ctx.tensor(x)], [ctx.output(node.output[0], ctx.perm(x))])


@lowers("Clip")
def clip(ctx: Lowering, node) -> None:
    """RELU6 / RELU / RELU_N1_TO_1 when the bounds match, else MAXIMUM then MINIMUM."""
    names = inputs(node)
    x, a = names[0], attrs(node)
    lo = _bound(ctx, names, 1, a.get("min"))
    hi = _bound(ctx, names, 2, a.get("max"))
    named = {(0.0, 6.0): "RELU6", (-1.0, 1.0): "RELU_N1_TO_1", (0.0, None): "RELU"}
    if (lo, hi) in named:
        emit_elementwise(ctx, [x], node.output[0], named[(lo, hi)])
        return
    steps = [(code, b) for code, b in (("MAXIMUM", lo), ("MINIMUM", hi)) if b is not None]
    if not steps:
        ctx.alias(node.output[0], x)
        return
    perm, dtype = ctx.perm(x), ctx.dtype(x)
    shape = layout.physical(ctx.shape(x), perm)
    current = ctx.tensor(x)
    for i, (code, bound) in enumerate(steps):
        if isinstance(bound, float):
            bound_t = ctx.const(np.asarray(bound, dtype=dtype))
        else:
            bound_t = ctx.tensor(bound, perm, len(perm))
        if i == len(steps) - 1:
            ctx.emit(code, [current, bound_t], [ctx.output(node.output[0], perm)])
        else:
            current = ctx.op(code, [current, bound_t], shape, dtype)


def _bound(ctx: Lowering, names: list[str], index: int, attr):
    """A Clip bound: a float for constants (None when absent or infinite), else the tensor name."""
    if index < len(names) and names[index]:
        value = ctx.value(names[index])
        if value is None:
            return names[index]
        value = float(np.asarray(value).ravel()[0])
    elif attr is not None:
        value = float(attr)
    else:
        return None
    return None if math.isinf(value) else value


@lowers("LeakyRelu")
def leaky_relu(ctx: Lowering, node) -> None:
    """LEAKY_RELU."""
    alpha = float(attrs(node).get("alpha", 0.01))
    emit_elementwise(
        ctx, [node.input[0]], node.output[0], "LEAKY_RELU", "LeakyReluOptions", alpha=alpha
    )


@lowers("Reciprocal")
def reciprocal(ctx: Lowering, node) -> None:
    """DIV(1, x)."""
    x = node.input[0]
    one = ctx.const(np.asarray(1, dtype=ctx.dtype(x)))
    ctx.emit("DIV", [one, ctx.tensor(x)], [ctx.output(node.output[0], ctx.perm(x))])


@lowers("HardSigmoid")
def hard_sigmoid(ctx: Lowering, node) -> None:
    """max(0, min(1, alpha*x + beta)): MUL, ADD, MINIMUM, MAXIMUM."""
    a, x = attrs(node), node.input[0]
    dtype, perm = ctx.dtype(x), ctx.perm(x)
    shape = layout.physical(ctx.shape(x), perm)

    def scalar(v):
        return ctx.const(np.asarray(v, dtype))

    scaled = ctx.op("MUL", [ctx.tensor(x), scalar(a.get("alpha", 0.2))], shape, dtype)
    shifted = ctx.op("ADD", [scaled, scalar(a.get("beta", 0.5))], shape, dtype)
    upper = ctx.op("MINIMUM", [shifted, scalar(1)], shape, dtype)
    ctx.emit("MAXIMUM", [upper, scalar(0)], [ctx.output(node.output[0], perm)])


@lowers("BatchNormalization")
def batch_norm(ctx: Lowering, node) -> None:
    """Inference BatchNormalization: x * scale + shift, per-channel constants stored in x's perm."""
    x = node.input[0]
    values = [ctx.value(n) for n in node.input[1:5]]
    if any(v is None for v in values):
        raise ctx.fail("scale, bias, mean and variance must be constants")
    if len(node.output) > 1 and any(node.output[1:]):
        raise ctx.fail("training-mode outputs are not supported")
    g, b, m, v = (np.asarray(t, dtype=np.float64) for t in values)
    scale = g / np.sqrt(v + float(attrs(node).get("epsilon", 1e-5)))
    shift = b - m * scale
    perm, dtype = ctx.perm(x), ctx.dtype(x)
    shape = layout.physical(ctx.shape(x), perm)
    view = (1, -1) + (1,) * (len(perm) - 2)

    def per_channel(arr):
        return ctx.const(np.transpose(arr.reshape(view).astype(dtype), perm))

    scaled = ctx.op("MUL", [ctx.tensor(x), per_channel(scale)], shape, dtype)
    ctx.emit("ADD", [scaled, per_channel(shift)], [ctx.output(node.output[0], perm)])
