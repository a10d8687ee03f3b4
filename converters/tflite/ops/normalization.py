"""Transformer operators with no TFLite builtin of their own, written with builtins.

LayerNormalization: y = (x - mean) * RSQRT(var + eps) * scale + bias over the trailing axes;
Erf: Abramowitz & Stegun 7.1.26, erf(x) = sign(x) (1 - t (a1 + t (a2 + ... a5)) exp(-x^2)) with
t = 1 / (1 + p |x|), absolute error below 1.5e-7 (float32 rounding is of the same order).
"""

from __future__ import annotations

import numpy as np

from edgesal.converters.tflite import layout
from edgesal.converters.tflite.context import Lowering
from edgesal.converters.tflite.ops.registry import attrs, inputs, lowers

_ERF_P = 0.3275911
_ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


@lowers("LayerNormalization", emits="MEAN, SUB, MUL, MEAN, ADD, RSQRT, MUL, MUL, ADD")
def layer_normalization(ctx: Lowering, node) -> None:
    """Normalize over axes ``axis..rank-1`` (computed in the ONNX axis order)."""
    if len([o for o in node.output if o]) > 1:
        raise ctx.fail("the Mean / InvStdDev outputs are not supported")
    names = inputs(node)
    x = names[0]
    shape, dtype = ctx.shape(x), ctx.dtype(x)
    rank = len(shape)
    axis = int(attrs(node).get("axis", -1)) % rank
    eps = float(attrs(node).get("epsilon", 1e-5))
    ident = layout.identity(rank)
    t = ctx.tensor(x, ident)
    axes = ctx.ints(list(range(axis, rank)))
    kept = [d if i < axis else 1 for i, d in enumerate(shape)]
    mean = ctx.op("MEAN", [t, axes], kept, dtype, "ReducerOptions", keep_dims=True)
    centred = ctx.op("SUB", [t, mean], shape, dtype)
    square = ctx.op("MUL", [centred, centred], shape, dtype)
    var = ctx.op("MEAN", [square, axes], kept, dtype, "ReducerOptions", keep_dims=True)
    shifted = ctx.op("ADD", [var, ctx.const(np.asarray(eps, dtype))], kept, dtype)
    inv = ctx.op("RSQRT", [shifted], kept, dtype)
    normed = ctx.op("MUL", [centred, inv], shape, dtype)
    scaled = ctx.op("MUL", [normed, ctx.tensor(names[1], rank=rank)], shape, dtype)
    if len(names) < 3:
        ctx.hold(node.output[0], scaled, ident)
        return
    ctx.emit("ADD", [scaled, ctx.tensor(names[2], rank=rank)], [ctx.output(node.output[0], ident)])


@lowers("Erf", emits="ABS, MUL, ADD, DIV, EXP, NEG, SIGN (A&S 7.1.26)")
def erf(ctx: Lowering, node) -> None:
    """erf(x) by a rational-exponential approximation (|error| < 1.5e-7)."""
    x = node.input[0]
    perm = ctx.perm(x)
    dtype = ctx.dtype(x)
    t_in = ctx.tensor(x)
    shape = ctx.physical_shape(t_in)

    def const(value: float) -> int:
        return ctx.const(np.asarray(value, dtype))

    def op(code: str, *operands: int) -> int:
        return ctx.op(code, list(operands), shape, dtype)

    t = op("DIV", const(1.0), op("ADD", op("MUL", op("ABS", t_in), const(_ERF_P)), const(1.0)))
    poly = op("MUL", t, const(_ERF_A[-1]))
    for a in reversed(_ERF_A[:-1]):
        poly = op("MUL", t, op("ADD", poly, const(a)))
    gauss = op("EXP", op("NEG", op("MUL", t_in, t_in)))
    tail = op("SUB", const(1.0), op("MUL", poly, gauss))
    ctx.emit("MUL", [op("SIGN", t_in), tail], [ctx.output(node.output[0], perm)])
