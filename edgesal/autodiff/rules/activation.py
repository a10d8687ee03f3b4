"""Activations and other pointwise functions, plus the operators whose derivative is zero.

Masks are written ``Mul(dy, Cast(cond))``, never ``Where(cond, dy, 0)``: on onnxruntime CPU
(2 threads, [1, 96, 112, 112] float32) the Where form of the Relu gradient takes ~5 ms against
~0.3 ms for Greater+Cast+Mul, because Where with a full-size operand is an order of magnitude
slower than the other elementwise kernels. Where a mask can be read from the forward output
instead of the input (Relu, Clip, LeakyRelu), it is, so the runtime can still fuse Conv+activation.

Non-smooth points follow PyTorch's autograd (checked by tests/test_kinks.py): Relu'(0) = 0,
Clip's gradient is 0 at both bounds (hardtanh/relu6 backward), LeakyRelu and PRelu use the slope at
0, HardSwish' is 0 at -3 and 1 at 3, HardSigmoid' is 0 at its bounds, Abs'(0) = 0.

Guided backpropagation (Springenberg et al. 2015), ``ctx.mode == "guided"``: the ReLU-like
activations (Relu, Clip, LeakyRelu, PRelu, HardSwish) pass only positive incoming gradients and
only where the forward input was positive: dx = max(dy, 0) * f'(x) * [x > 0]. Every other rule
is exact in both modes.
"""

from __future__ import annotations

import math

import numpy as np

from edgesal.autodiff.registry import GradContext, register, register_zero
from edgesal.errors import InputError
from edgesal.graph.idioms import masks
from edgesal.graph.optraits import with_trait

MODES = ("vanilla", "guided")


def _guided(ctx: GradContext) -> bool:
    """True in guided mode; an unknown mode is an error naming the node."""
    if ctx.mode not in MODES:
        raise InputError(
            f"unknown gradient mode '{ctx.mode}' at {ctx.node.op_type} node "
            f"'{ctx.node.name or ctx.y[0]}'; expected one of {', '.join(MODES)}"
        )
    return ctx.mode == "guided"


def _incoming(ctx: GradContext) -> str:
    """dy, or max(dy, 0) in guided mode."""
    return ctx.b.Relu(ctx.dy0) if _guided(ctx) else ctx.dy0


def _mask(ctx: GradContext, v: str, above: str | None, below: str | None = None) -> str | None:
    """1[above < v < below] in the element type of the node's first input (an open side is None;
    None when both are), in the form :mod:`edgesal.graph.idioms.masks` owns."""
    return masks.emit(ctx.b, v, above, below, ctx.info.dtype(ctx.x[0]))


@register("Relu")
def relu(ctx: GradContext) -> list[str | None]:
    """dx = dy * [y > 0]; guided: max(dy, 0) * [y > 0]. Relu'(0) = 0 (torch)."""
    y = ctx.y[0]
    return [ctx.b.Mul(_incoming(ctx), _mask(ctx, y, ctx.scalar(0, y)))]


@register("Clip")
def clip(ctx: GradContext) -> list[str | None]:
    """dx = dy * [lo < y < hi]; guided: max(dy, 0) * [max(lo, 0) < y < hi].

    Zero at both bounds, as torch's hardtanh and relu6 backward (torch.clamp would give 1 there).
    Reading y is equivalent to reading x: y > lo iff x > lo and y < hi iff x < hi.
    """
    y = ctx.y[0]
    lo, hi = _clip_bounds(ctx)
    if _guided(ctx):
        lo = _at_least_zero(ctx, lo)
    mask = _mask(ctx, y, lo, hi)
    incoming = _incoming(ctx)
    return [incoming if mask is None else ctx.b.Mul(incoming, mask)]


def _clip_bounds(ctx: GradContext) -> tuple[str | None, str | None]:
    """Clip's (min, max) tensors: optional inputs since opset 11, attributes before."""
    if ctx.opset >= 11:
        names = ctx.x[1:3] + [""] * (3 - len(ctx.x))
        return names[0] or None, names[1] or None
    lo, hi = ctx.attr("min"), ctx.attr("max")
    x = ctx.x[0]
    return (
        None if lo is None else ctx.scalar(lo, x),
        None if hi is None else ctx.scalar(hi, x),
    )


def _at_least_zero(ctx: GradContext, bound: str | None) -> str:
    """max(bound, 0) as a tensor (a constant when the bound is one); 0 when there is no bound."""
    zero = ctx.scalar(0, ctx.x[0])
    if bound is None:
        return zero
    value = ctx.value(bound)
    if value is not None:
        return ctx.b.const(np.maximum(value, 0).astype(ctx.dtype(ctx.x[0])))
    return ctx.b.Max(bound, zero)


@register("LeakyRelu")
def leaky_relu(ctx: GradContext) -> list[str | None]:
    """dx = dy * (a + (1 - a) [x > 0]), the slope a at 0 (torch); guided: max(dy, 0) * [x > 0].

    With a >= 0, y > 0 iff x > 0, so the mask reads y.
    """
    alpha = ctx.attr("alpha", 0.01)
    probe = ctx.y[0] if alpha >= 0 else ctx.x[0]
    positive = _mask(ctx, probe, ctx.scalar(0, probe))
    if _guided(ctx):
        return [ctx.b.Mul(ctx.b.Relu(ctx.dy[0]), positive)]
    x = ctx.x[0]
    slope = ctx.b.Add(ctx.b.Mul(positive, ctx.scalar(1 - alpha, x)), ctx.scalar(alpha, x))
    return [ctx.b.Mul(ctx.dy[0], slope)]


@register("PRelu", broadcasting=True)
def prelu(ctx: GradContext) -> list[str | None]:
    """dx = dy * (s + (1 - s) [x > 0]), the slope s at 0 (torch); ds = dy * min(x, 0).

    Guided: dx = max(dy, 0) * [x > 0]; the slope's gradient stays exact. The engine sums ds
    over the axes the slope was broadcast along.
    """
    x, slope = ctx.x
    zero = ctx.scalar(0, x)
    grad_x = grad_slope = None
    if ctx.needs[0]:
        positive = _mask(ctx, x, zero)
        if _guided(ctx):
            grad_x = ctx.b.Mul(ctx.b.Relu(ctx.dy[0]), positive)
        else:
            factor = ctx.b.Add(ctx.b.Mul(positive, _one_minus(ctx, slope)), slope)
            grad_x = ctx.b.Mul(ctx.dy[0], factor)
    if ctx.needs[1]:
        grad_slope = ctx.b.Mul(ctx.dy[0], ctx.b.Min(x, zero))
    return [grad_x, grad_slope]


def _one_minus(ctx: GradContext, name: str) -> str:
    """1 - t, folded to a constant when t is one."""
    value = ctx.value(name)
    if value is not None:
        return ctx.b.const((1 - value).astype(value.dtype))
    return ctx.b.Sub(ctx.scalar(1, name), name)


@register("HardSwish")
def hard_swish(ctx: GradContext) -> list[str | None]:
    """dx = dy * hs'(x): 0 for x <= -3, x/3 + 1/2 inside, 1 for x >= 3 (torch's convention).

    Computed as g + [|x| < 3] (g - 1/2) with g = HardSigmoid(x) = clip(x/6 + 1/2, 0, 1).
    Guided: max(dy, 0) * hs'(x) * [x > 0].
    """
    x = ctx.x[0]
    g = ctx.b.HardSigmoid(x, alpha=1 / 6, beta=0.5)
    inside = _mask(ctx, ctx.b.Abs(x), None, ctx.scalar(3, x))
    slope = ctx.b.Add(g, ctx.b.Mul(inside, ctx.b.Sub(g, ctx.scalar(0.5, x))))
    if _guided(ctx):
        slope = ctx.b.Mul(slope, _mask(ctx, x, ctx.scalar(0, x)))
    return [ctx.b.Mul(_incoming(ctx), slope)]


@register("HardSigmoid")
def hard_sigmoid(ctx: GradContext) -> list[str | None]:
    """dx = dy * alpha * [0 < alpha x + beta < 1]; zero at both bounds (torch's hardsigmoid).

    The window is compared on x, (-beta/alpha, (1-beta)/alpha) rounded to x's type, not on y:
    in float32 alpha x + beta already rounds to 1 one ulp below x = 3, where torch's slope is 1/6.
    """
    x = ctx.x[0]
    alpha, beta = ctx.attr("alpha", 0.2), ctx.attr("beta", 0.5)
    if alpha == 0:
        return [None]
    lo, hi = sorted((-beta / alpha, (1 - beta) / alpha))
    inside = _mask(ctx, x, ctx.scalar(lo, x), ctx.scalar(hi, x))
    return [ctx.b.Mul(ctx.b.Mul(ctx.dy[0], ctx.scalar(alpha, x)), inside)]


@register("Sigmoid")
def sigmoid(ctx: GradContext) -> list[str | None]:
    """dx = dy * y * (1 - y)."""
    y = ctx.y[0]
    return [ctx.b.Mul(ctx.dy[0], ctx.b.Mul(y, ctx.b.Sub(ctx.scalar(1, y), y)))]


@register("Tanh")
def tanh(ctx: GradContext) -> list[str | None]:
    """dx = dy * (1 - y^2)."""
    y = ctx.y[0]
    return [ctx.b.Mul(ctx.dy[0], ctx.b.Sub(ctx.scalar(1, y), ctx.b.Mul(y, y)))]


@register("Softmax")
def softmax(ctx: GradContext) -> list[str | None]:
    """dx = y * (dy - sum(dy * y, axis)) (opset >= 13: one axis, default -1)."""
    y, dy = ctx.y[0], ctx.dy0
    total = _sum_over(ctx, ctx.b.Mul(dy, y), ctx.attr("axis", -1))
    return [ctx.b.Mul(y, ctx.b.Sub(dy, total))]


@register("LogSoftmax")
def log_softmax(ctx: GradContext) -> list[str | None]:
    """dx = dy - exp(y) * sum(dy, axis) (opset >= 13: one axis, default -1)."""
    y, dy = ctx.y[0], ctx.dy0
    total = _sum_over(ctx, dy, ctx.attr("axis", -1))
    return [ctx.b.Sub(dy, ctx.b.Mul(ctx.b.Exp(y), total))]


def _sum_over(ctx: GradContext, tensor: str, axis: int) -> str:
    """ReduceSum over one axis, kept as size 1 so the result broadcasts back."""
    if ctx.opset < 13:
        raise InputError(
            f"{ctx.node.op_type} node '{ctx.node.name or ctx.y[0]}' uses opset {ctx.opset} "
            "semantics (softmax over flattened trailing axes); convert the model to opset >= 13"
        )
    return ctx.b.ReduceSum(tensor, ctx.b.ints([axis]), keepdims=1)


@register("Elu")
def elu(ctx: GradContext) -> list[str | None]:
    """dx = dy for x > 0, dy * (y + a) = dy * a e^x for x <= 0 (a at 0, as torch)."""
    alpha = ctx.attr("alpha", 1.0)
    return [ctx.b.Mul(ctx.dy[0], _exponential_linear_slope(ctx, 1.0, alpha))]


@register("Selu")
def selu(ctx: GradContext) -> list[str | None]:
    """dx = dy * g for x > 0, dy * (y + g a) = dy * g a e^x for x <= 0 (g a at 0, as torch)."""
    alpha = ctx.attr("alpha", 1.67326319217681884765625)
    gamma = ctx.attr("gamma", 1.05070102214813232421875)
    return [ctx.b.Mul(ctx.dy[0], _exponential_linear_slope(ctx, gamma, gamma * alpha))]


def _exponential_linear_slope(ctx: GradContext, positive: float, negative: float) -> str:
    """f'(x) of y = positive x (x > 0), negative (e^x - 1) (x <= 0), from y alone.

    f' = min(y, 0) + negative + (positive - negative) [y > 0]; the mask is skipped when the
    two pieces meet smoothly (Elu with alpha = 1).
    """
    y = ctx.y[0]
    slope = ctx.b.Add(ctx.b.Min(y, ctx.scalar(0, y)), ctx.scalar(negative, y))
    if positive == negative:
        return slope
    step = _mask(ctx, y, ctx.scalar(0, y))
    return ctx.b.Add(slope, ctx.b.Mul(step, ctx.scalar(positive - negative, y)))


@register("Softplus")
def softplus(ctx: GradContext) -> list[str | None]:
    """dx = dy * sigmoid(x)."""
    return [ctx.b.Mul(ctx.dy[0], ctx.b.Sigmoid(ctx.x[0]))]


@register("Exp")
def exp(ctx: GradContext) -> list[str | None]:
    """dx = dy * y."""
    return [ctx.b.Mul(ctx.dy[0], ctx.y[0])]


@register("Log")
def log(ctx: GradContext) -> list[str | None]:
    """dx = dy / x."""
    return [ctx.b.Div(ctx.dy[0], ctx.x[0])]


@register("Sqrt")
def sqrt(ctx: GradContext) -> list[str | None]:
    """dx = dy / (2 y)."""
    y = ctx.y[0]
    return [ctx.b.Div(ctx.b.Mul(ctx.dy[0], ctx.scalar(0.5, y)), y)]


@register("Abs")
def abs_(ctx: GradContext) -> list[str | None]:
    """dx = dy * sign(x); Abs'(0) = 0 (torch)."""
    return [ctx.b.Mul(ctx.dy[0], ctx.b.Sign(ctx.x[0]))]


@register("Reciprocal")
def reciprocal(ctx: GradContext) -> list[str | None]:
    """dx = -dy * y^2."""
    y = ctx.y[0]
    return [ctx.b.Mul(ctx.b.Neg(ctx.dy[0]), ctx.b.Mul(y, y))]


@register("Pow", broadcasting=True)
def pow_(ctx: GradContext) -> list[str | None]:
    """d(x^p) = (dy * p * x^(p-1), dy * y * ln x); the exponent's gradient needs x > 0."""
    x, p = ctx.x
    dy = ctx.dy[0]
    grad_x = grad_p = None
    if ctx.needs[0]:
        grad_x = ctx.b.Mul(dy, _power_slope(ctx, x, p))
    if ctx.needs[1]:
        grad_p = ctx.b.Mul(dy, ctx.b.Mul(ctx.y[0], ctx.b.Log(x)))
    return [grad_x, grad_p]


def _power_slope(ctx: GradContext, x: str, p: str) -> str:
    """p * x^(p-1), folded for a constant exponent (2 x for the square)."""
    dtype = ctx.dtype(x)
    value = ctx.value(p)
    if value is not None:
        exponent = value.astype(dtype)
        if exponent.size == 1 and float(exponent) == 2.0:
            return ctx.b.Mul(x, ctx.scalar(2, x))
        return ctx.b.Mul(ctx.b.Pow(x, ctx.b.const(exponent - 1)), ctx.b.const(exponent))
    if ctx.dtype(p) != dtype:
        p = ctx.b.Cast(p, to=ctx.info.dtype(x))
    return ctx.b.Mul(ctx.b.Pow(x, ctx.b.Sub(p, ctx.scalar(1, x))), p)


@register("Erf")
def erf(ctx: GradContext) -> list[str | None]:
    """dx = dy * 2/sqrt(pi) * exp(-x^2)."""
    x = ctx.x[0]
    gauss = ctx.b.Exp(ctx.b.Neg(ctx.b.Mul(x, x)))
    return [ctx.b.Mul(ctx.dy[0], ctx.b.Mul(gauss, ctx.scalar(2 / math.sqrt(math.pi), x)))]


# Piecewise-constant functions, comparisons, logic, indices and shapes: no gradient flows back.
register_zero(*sorted(with_trait("zero")))
