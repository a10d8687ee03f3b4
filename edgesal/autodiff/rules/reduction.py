"""Reductions: ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceSumSquare, ReduceL1, ReduceL2,
ReduceLogSum, ReduceLogSumExp.

Each rule brings dy back to the keepdims shape (a Reshape when keepdims=0), then broadcasts it
over the reduced axes. Axes come from the attribute (opset < 18, ReduceSum < 13) or the constant
input; omitted axes reduce everything unless noop_with_empty_axes=1, which makes the reduction
elementwise (the runtimes then compute e.g. x^2 for ReduceSumSquare, so the same formulas hold).

ReduceMax/ReduceMin ties follow torch.amax/amin: the gradient is split evenly among the tied
extremes (torch.max(dim) would pick one; ONNX's ReduceMax is the amax reduction).
"""

from __future__ import annotations

import math

from edgesal.autodiff.registry import GradContext, register
from edgesal.autodiff.rules.shape import constant_ints


def reduced_axes(ctx: GradContext) -> list[int]:
    """Sorted non-negative axes the node reduces; [] when it is elementwise (noop)."""
    rank = len(ctx.shape(ctx.x[0]))
    axes = ctx.attr("axes")
    if axes is None:
        axes = constant_ints(ctx, 1, "axes")
    if not axes:
        return [] if ctx.attr("noop_with_empty_axes", 0) else list(range(rank))
    return sorted({int(a) % rank for a in axes})


def kept(ctx: GradContext, t: str, axes: list[int]) -> str:
    """``t`` (shaped like the output) reshaped to the keepdims=1 shape, which broadcasts to x."""
    if ctx.attr("keepdims", 1) or not axes:
        return t
    shape = [1 if i in axes else n for i, n in enumerate(ctx.shape(ctx.x[0]))]
    return ctx.b.Reshape(t, ctx.b.ints(shape))


def spread(ctx: GradContext, t: str) -> str:
    """Broadcast a keepdims-shaped tensor to the shape of x."""
    return ctx.b.Expand(t, ctx.b.ints(ctx.shape(ctx.x[0])))


@register("ReduceSum")
def reduce_sum(ctx: GradContext) -> list[str | None]:
    """dx = broadcast(dy)."""
    axes = reduced_axes(ctx)
    return [spread(ctx, kept(ctx, ctx.dy0, axes))]


@register("ReduceMean")
def reduce_mean(ctx: GradContext) -> list[str | None]:
    """dx = broadcast(dy) / (number of reduced elements)."""
    axes = reduced_axes(ctx)
    count = math.prod(ctx.shape(ctx.x[0])[a] for a in axes)
    scaled = ctx.b.Mul(kept(ctx, ctx.dy0, axes), ctx.scalar(1.0 / count, ctx.x[0]))
    return [spread(ctx, scaled)]


@register("ReduceSumSquare")
def reduce_sum_square(ctx: GradContext) -> list[str | None]:
    """y = sum x^2: dx = 2 x dy."""
    dy = kept(ctx, ctx.dy0, reduced_axes(ctx))
    return [ctx.b.Mul(ctx.b.Mul(dy, ctx.scalar(2.0, ctx.x[0])), ctx.x[0])]


@register("ReduceL1")
def reduce_l1(ctx: GradContext) -> list[str | None]:
    """y = sum |x|: dx = sign(x) dy (0 at x = 0, as torch)."""
    dy = kept(ctx, ctx.dy0, reduced_axes(ctx))
    return [ctx.b.Mul(dy, ctx.b.Sign(ctx.x[0]))]


@register("ReduceL2")
def reduce_l2(ctx: GradContext) -> list[str | None]:
    """y = sqrt(sum x^2): dx = x dy / y; a zero norm passes no gradient (torch's choice)."""
    b = ctx.b
    axes = reduced_axes(ctx)
    y = kept(ctx, ctx.y[0], axes)
    zero, one = ctx.scalar(0.0, ctx.x[0]), ctx.scalar(1.0, ctx.x[0])
    safe = b.Where(b.Equal(y, zero), one, y)
    return [b.Mul(b.Div(kept(ctx, ctx.dy0, axes), safe), ctx.x[0])]


@register("ReduceLogSum")
def reduce_log_sum(ctx: GradContext) -> list[str | None]:
    """y = log(sum x): dx = dy / exp(y), broadcast."""
    axes = reduced_axes(ctx)
    total = ctx.b.Exp(kept(ctx, ctx.y[0], axes))
    return [spread(ctx, ctx.b.Div(kept(ctx, ctx.dy0, axes), total))]


@register("ReduceLogSumExp")
def reduce_log_sum_exp(ctx: GradContext) -> list[str | None]:
    """y = log(sum exp x): dx = dy * exp(x - y) (the softmax over the reduced axes)."""
    axes = reduced_axes(ctx)
    weights = ctx.b.Exp(ctx.b.Sub(ctx.x[0], kept(ctx, ctx.y[0], axes)))
    return [ctx.b.Mul(kept(ctx, ctx.dy0, axes), weights)]


@register("ReduceMax", "ReduceMin")
def reduce_extreme(ctx: GradContext) -> list[str | None]:
    """dx = dy * [x == y] / (number of tied extremes): torch.amax/amin's even split."""
    b = ctx.b
    axes = reduced_axes(ctx)
    x = ctx.x[0]
    hit = b.Cast(b.Equal(x, kept(ctx, ctx.y[0], axes)), to=ctx.info.dtype(x))
    dy = kept(ctx, ctx.dy0, axes)
    if axes:
        dy = b.Div(dy, b.ReduceSum(hit, b.ints(axes), keepdims=1))
    return [b.Mul(hit, dy)]
