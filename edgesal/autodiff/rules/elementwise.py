"""Arithmetic and pass-through operators: Add, Sub, Mul, Div, Neg, Sum, Identity, Dropout, Cast."""

from __future__ import annotations

import numpy as np
import onnx

from edgesal.autodiff.registry import GradContext, register

_FLOAT_TYPES = {
    onnx.TensorProto.FLOAT,
    onnx.TensorProto.DOUBLE,
    onnx.TensorProto.FLOAT16,
    onnx.TensorProto.BFLOAT16,
}


@register("Add", broadcasting=True)
def add(ctx: GradContext) -> list[str | None]:
    """d(a+b) = (dy, dy)."""
    return [ctx.dy[0], ctx.dy[0]]


@register("Sub", broadcasting=True)
def sub(ctx: GradContext) -> list[str | None]:
    """d(a-b) = (dy, -dy)."""
    return [ctx.dy[0], ctx.b.Neg(ctx.dy[0]) if ctx.needs[1] else None]


@register("Mul", broadcasting=True)
def mul(ctx: GradContext) -> list[str | None]:
    """d(a*b) = (dy*b, dy*a)."""
    a, b_ = ctx.x
    dy = ctx.dy[0]
    return [
        ctx.b.Mul(dy, b_) if ctx.needs[0] else None,
        ctx.b.Mul(dy, a) if ctx.needs[1] else None,
    ]


@register("Div", broadcasting=True)
def div(ctx: GradContext) -> list[str | None]:
    """d(a/b) = (dy/b, -dy*a/b^2) = (dy/b, -(dy/b)*y)."""
    _, den = ctx.x
    scaled = ctx.b.Div(ctx.dy[0], den)
    grad_den = ctx.b.Neg(ctx.b.Mul(scaled, ctx.y[0])) if ctx.needs[1] else None
    return [scaled if ctx.needs[0] else None, grad_den]


@register("Neg")
def neg(ctx: GradContext) -> list[str | None]:
    """d(-x) = -dy."""
    return [ctx.b.Neg(ctx.dy[0])]


@register("Sum", broadcasting=True)
def sum_(ctx: GradContext) -> list[str | None]:
    """d(x1+...+xn) = dy for every input."""
    return [ctx.dy[0]] * len(ctx.x)


@register("Identity")
def identity(ctx: GradContext) -> list[str | None]:
    """d(x) = dy."""
    return [ctx.dy[0]]


@register("Dropout")
def dropout(ctx: GradContext) -> list[str | None]:
    """Inference-mode Dropout is the identity; ratio and training_mode get no gradient."""
    return [ctx.dy[0]]


@register("Cast")
def cast(ctx: GradContext) -> list[str | None]:
    """Cast back to the input's float type; integer inputs get no gradient."""
    source = ctx.info.dtype(ctx.x[0])
    if source not in _FLOAT_TYPES:
        return [None]
    return [ctx.b.Cast(ctx.dy[0], to=int(source))]


def zeros_like(ctx: GradContext, name: str) -> str:
    """A constant of zeros shaped and typed like tensor ``name``."""
    return ctx.b.const(np.zeros(ctx.shape(name), ctx.dtype(name)), hint="zeros")
