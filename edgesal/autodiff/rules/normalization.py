"""Normalization layers: BatchNormalization (inference), InstanceNormalization, LayerNormalization.

Instance and layer normalization share one backward: with x_hat = (x - mean) / sqrt(var + eps)
over the normalized axes, y = x_hat * scale + bias and g = dy * scale,
dx = (g - mean(g) - x_hat * mean(g * x_hat)) / sqrt(var + eps). Statistics are recomputed from x
with ReduceSum (axes as an input at every opset from 13 to 21, unlike ReduceMean).
"""

from __future__ import annotations

import numpy as np

from edgesal.autodiff.registry import GradContext, register
from edgesal.errors import InputError


@register("BatchNormalization")
def batch_normalization(ctx: GradContext) -> list[str | None]:
    """dx = dy * scale / sqrt(var + eps), per channel (axis 1); inference mode, X only.

    With constant scale and var the factor is folded into one constant, so the whole rule is a
    single Mul.
    """
    if ctx.attr("training_mode", 0):
        raise InputError(_where(ctx) + " runs in training mode; export the model for inference")
    _reject_other_inputs(ctx, "scale, B, mean and var")
    x, scale, _, _, var = ctx.x[:5]
    eps = ctx.attr("epsilon", 1e-5)
    channels = [-1] + [1] * (len(ctx.shape(x)) - 2)
    s, v = ctx.value(scale), ctx.value(var)
    if s is not None and v is not None:
        factor = s.astype(np.float64) / np.sqrt(v.astype(np.float64) + eps)
        k = ctx.b.const(factor.astype(ctx.dtype(x)).reshape(channels), hint="bn_factor")
    else:
        root = ctx.b.Sqrt(ctx.b.Add(var, ctx.scalar(eps, var)))
        k = _as_type(ctx, ctx.b.Reshape(ctx.b.Div(scale, root), ctx.b.ints(channels)), scale, x)
    return [ctx.b.Mul(ctx.dy[0], k)]


@register("InstanceNormalization")
def instance_normalization(ctx: GradContext) -> list[str | None]:
    """Normalizes each (n, c) over the spatial axes; dscale = sum(dy * x_hat), dB = sum(dy).

    Scale and B have shape [C]; their gradients are summed over batch and spatial axes here.
    """
    x, scale = ctx.x[:2]
    rank = len(ctx.shape(x))
    channels = ctx.b.ints([-1] + [1] * (rank - 2))
    spatial = list(range(2, rank))
    x_hat, inv_std = _standardize(ctx, x, spatial, ctx.attr("epsilon", 1e-5))
    dy = ctx.dy[0]
    grads: list[str | None] = [None, None, None]
    if ctx.needs[0]:
        g = ctx.b.Mul(dy, ctx.b.Reshape(scale, channels))
        grads[0] = _standardize_backward(ctx, g, x_hat, inv_std, spatial)
    outer = ctx.b.ints([0, *spatial])
    if ctx.needs[1]:
        grads[1] = ctx.b.ReduceSum(ctx.b.Mul(dy, x_hat), outer, keepdims=0)
    if ctx.needs[2]:
        grads[2] = ctx.b.ReduceSum(dy, outer, keepdims=0)
    return grads


@register("LayerNormalization", broadcasting=True)
def layer_normalization(ctx: GradContext) -> list[str | None]:
    """Normalizes over the axes from ``axis`` on; dScale = dy * x_hat, dB = dy (engine sums them).

    Only Y may carry a gradient: Mean and InvStdDev are training outputs, and a gradient into
    them is an error naming the node.
    """
    if any(g is not None for g in ctx.dy[1:]):
        raise InputError(_where(ctx) + " has its Mean/InvStdDev outputs on the gradient path")
    x, scale = ctx.x[:2]
    rank = len(ctx.shape(x))
    axes = list(range(ctx.attr("axis", -1) % rank, rank))
    x_hat, inv_std = _standardize(ctx, x, axes, ctx.attr("epsilon", 1e-5))
    dy = ctx.dy0
    grads: list[str | None] = [None] * len(ctx.x)
    if ctx.needs[0]:
        grads[0] = _standardize_backward(ctx, ctx.b.Mul(dy, scale), x_hat, inv_std, axes)
    if ctx.needs[1]:
        grads[1] = ctx.b.Mul(dy, x_hat)
    if len(ctx.x) > 2 and ctx.needs[2]:
        grads[2] = dy
    return grads


def _standardize(ctx: GradContext, x: str, axes: list[int], eps: float) -> tuple[str, str]:
    """(x_hat, 1/sqrt(var + eps)) over ``axes``, the statistics kept with size-1 axes."""
    centered = ctx.b.Sub(x, _mean(ctx, x, axes))
    var = _mean(ctx, ctx.b.Mul(centered, centered), axes)
    inv_std = ctx.b.Reciprocal(ctx.b.Sqrt(ctx.b.Add(var, ctx.scalar(eps, x))))
    return ctx.b.Mul(centered, inv_std), inv_std


def _standardize_backward(
    ctx: GradContext, g: str, x_hat: str, inv_std: str, axes: list[int]
) -> str:
    """(g - mean(g) - x_hat * mean(g * x_hat)) * inv_std: the VJP of x -> x_hat for cotangent g."""
    projection = ctx.b.Mul(x_hat, _mean(ctx, ctx.b.Mul(g, x_hat), axes))
    return ctx.b.Mul(ctx.b.Sub(ctx.b.Sub(g, _mean(ctx, g, axes)), projection), inv_std)


def _mean(ctx: GradContext, tensor: str, axes: list[int]) -> str:
    """Mean over ``axes`` with keepdims, as ReduceSum times 1/n."""
    shape = ctx.shape(ctx.x[0])
    count = int(np.prod([shape[a] for a in axes]))
    total = ctx.b.ReduceSum(tensor, ctx.b.ints(axes), keepdims=1)
    return ctx.b.Mul(total, ctx.scalar(1.0 / count, ctx.x[0]))


def _reject_other_inputs(ctx: GradContext, names: str) -> None:
    """Raise when anything but X lies on the gradient path (the rule differentiates X only)."""
    others = [name for name, need in zip(ctx.x[1:], ctx.needs[1:], strict=True) if need]
    if others:
        raise InputError(
            f"{_where(ctx)}: {names} must not depend on the input image "
            f"({', '.join(others)} do); only X is differentiated"
        )


def _as_type(ctx: GradContext, tensor: str, source: str, like: str) -> str:
    """Cast ``tensor`` (typed like ``source``) to the element type of ``like`` when they differ."""
    if ctx.dtype(source) == ctx.dtype(like):
        return tensor
    return ctx.b.Cast(tensor, to=ctx.info.dtype(like))


def _where(ctx: GradContext) -> str:
    return f"{ctx.node.op_type} node '{ctx.node.name or ctx.y[0]}'"
