"""Data movement: Pad, Reshape-likes, Transpose, Concat, Split, Slice, Gather, Expand, Tile.

Each gradient puts dy back where the forward took its elements from, with forward operators only
(Slice, Pad, Concat, Reshape, Gather, MatMul, ReduceSum): no ScatterND, so the backward graph lowers
to TFLite builtins. Index arguments (pads, starts, gather indices) must be constants; shapes are
static. The placement helpers here (:func:`place`, and the interleave of
:mod:`edgesal.graph.idioms.interleave`) are shared with pooling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from edgesal.autodiff.registry import GradContext, register
from edgesal.errors import UnsupportedAttributeError
from edgesal.graph.idioms.interleave import emit as interleave

_BIG = np.iinfo(np.int64).max


def constant_ints(ctx: GradContext, index: int, what: str) -> list[int] | None:
    """Values of optional int input ``index`` (None when omitted); it must be a constant."""
    if index >= len(ctx.x) or not ctx.x[index]:
        return None
    value = ctx.value(ctx.x[index])
    if value is None:
        raise UnsupportedAttributeError(ctx, f"its {what} input '{ctx.x[index]}' is not a constant")
    return [int(v) for v in np.asarray(value).ravel()]


def required_ints(ctx: GradContext, index: int, what: str) -> list[int]:
    """Values of int input ``index``, which the operator requires (opsets before Slice 10 and
    Pad 11 held them as attributes, which no rule reads)."""
    values = constant_ints(ctx, index, what)
    if values is None:
        raise UnsupportedAttributeError(ctx, f"its {what} input is missing")
    return values


# ---------------------------------------------------------------------------------------------
# placement helpers


def place(
    b,
    t: str,
    shape: Sequence[int],
    begins: Sequence[int],
    target: Sequence[int],
    fill: str | None = None,
) -> str:
    """A tensor of shape ``target`` holding ``t`` (of ``shape``) at offset ``begins``.

    The rest is zeros, or the scalar tensor ``fill``. Parts of ``t`` that fall past the end of
    ``target`` are cut off (they must be zeros).
    """
    ends = [min(s, g - o) for s, o, g in zip(shape, begins, target, strict=True)]
    if any(e < s for e, s in zip(ends, shape, strict=True)):
        t = b.Slice(t, b.ints([0] * len(shape)), b.ints(ends))
    after = [g - o - e for g, o, e in zip(target, begins, ends, strict=True)]
    if any(begins) or any(after):
        t = b.Pad(t, b.ints(list(begins) + after), *([fill] if fill else []))
    return t


def crop(b, t: str, shape: Sequence[int], begins: Sequence[int], sizes: Sequence[int]) -> str:
    """t[begins : begins + sizes] (a Slice, skipped when it is the whole tensor)."""
    if list(begins) == [0] * len(shape) and list(sizes) == list(shape):
        return t
    ends = [o + s for o, s in zip(begins, sizes, strict=True)]
    return b.Slice(t, b.ints(begins), b.ints(ends))


def zeros_of(ctx: GradContext, name: str) -> str:
    """Zeros shaped and typed like tensor ``name``."""
    return ctx.b.const(np.zeros(ctx.shape(name), ctx.dtype(name)), hint="zeros")


# ---------------------------------------------------------------------------------------------
# rules


@register("Reshape", "Flatten", "Squeeze", "Unsqueeze")
def reshape(ctx: GradContext) -> list[str | None]:
    """Element order is unchanged: dx = Reshape(dy, shape(x))."""
    return [ctx.b.Reshape(ctx.dy[0], ctx.b.ints(ctx.shape(ctx.x[0])))]


@register("Transpose")
def transpose(ctx: GradContext) -> list[str | None]:
    """dx = Transpose(dy, inverse(perm)); perm defaults to reversing the axes."""
    rank = len(ctx.shape(ctx.x[0]))
    perm = list(ctx.attr("perm", list(reversed(range(rank)))))
    return [ctx.b.Transpose(ctx.dy[0], perm=[int(i) for i in np.argsort(perm)])]


@register("Expand", broadcasting=True)
def expand(ctx: GradContext) -> list[str | None]:
    """Expand is a broadcast: dx = dy summed over the broadcast axes (the engine does the sum)."""
    return [ctx.dy[0], None]


@register("Tile")
def tile(ctx: GradContext) -> list[str | None]:
    """y = x repeated r_i times along axis i: dx = sum over the r_i copies, one axis at a time.

    dy is viewed as (A, r, n*B) for each tiled axis and summed over r: tensors stay 3-D.
    """
    shape = list(ctx.shape(ctx.y[0]))
    x_shape = ctx.shape(ctx.x[0])
    grad = ctx.dy[0]
    for axis, n in enumerate(x_shape):
        repeats = shape[axis] // n if n else 1
        if repeats == 1:
            continue
        view = [math.prod(shape[:axis]), repeats, n * math.prod(shape[axis + 1 :])]
        grad = ctx.b.ReduceSum(ctx.b.Reshape(grad, ctx.b.ints(view)), ctx.b.ints([1]), keepdims=0)
        shape[axis] = n
        grad = ctx.b.Reshape(grad, ctx.b.ints(shape))
    return [grad]


@register("Concat")
def concat(ctx: GradContext) -> list[str | None]:
    """dx_i = the slice of dy that input i filled along ``axis``."""
    rank = len(ctx.shape(ctx.y[0]))
    axis = ctx.attr("axis") % rank
    b = ctx.b
    grads, offset = [], 0
    for name, needed in zip(ctx.x, ctx.needs, strict=True):
        end = offset + ctx.shape(name)[axis]
        if needed:
            grads.append(b.Slice(ctx.dy[0], b.ints([offset]), b.ints([end]), b.ints([axis])))
        else:
            grads.append(None)
        offset = end
    return grads


@register("Split")
def split(ctx: GradContext) -> list[str | None]:
    """dx = Concat(dy_0, ..., dy_k) along ``axis``; outputs with no gradient become zero padding."""
    rank = len(ctx.shape(ctx.x[0]))
    axis = ctx.attr("axis", 0) % rank
    pieces: list[str] = []
    pending = 0  # zero rows waiting to be attached in front of the next piece
    for i, out in enumerate(ctx.y):
        length = ctx.shape(out)[axis]
        grad = ctx.dy[i]
        if grad is None:
            if pieces:
                pieces[-1] = _axis_pad(ctx, pieces[-1], rank, axis, 0, length)
            else:
                pending += length
            continue
        pieces.append(_axis_pad(ctx, grad, rank, axis, pending, 0) if pending else grad)
        pending = 0
    grad = pieces[0] if len(pieces) == 1 else ctx.b.Concat(*pieces, axis=axis)
    return [grad]


@register("Slice")
def slice_(ctx: GradContext) -> list[str | None]:
    """dy goes back to the sliced positions, zeros elsewhere (works for any steps).

    Per axis the selected indices form start, start+step, ...; a negative step is undone by
    reversing dy, a step above 1 by interleaving zeros, and the offset by a Pad.
    """
    shape = ctx.shape(ctx.x[0])
    rank = len(shape)
    starts = required_ints(ctx, 1, "starts")
    ends = required_ints(ctx, 2, "ends")
    axes = constant_ints(ctx, 3, "axes") or list(range(len(starts)))
    steps = constant_ints(ctx, 4, "steps") or [1] * len(starts)
    picks = [range(n) for n in shape]
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        axis %= rank
        picks[axis] = range(*slice(start, end, step).indices(shape[axis]))
    if any(len(p) == 0 for p in picks):
        return [zeros_of(ctx, ctx.x[0])]
    grad = ctx.dy0
    out_shape = [len(p) for p in picks]
    backwards = [axis for axis, p in enumerate(picks) if p.step < 0]
    if backwards:
        grad = ctx.b.Slice(
            grad,
            ctx.b.ints([-1] * len(backwards)),
            ctx.b.ints([-_BIG] * len(backwards)),
            ctx.b.ints(backwards),
            ctx.b.ints([-1] * len(backwards)),
        )
    for axis, p in enumerate(picks):
        stride = abs(p.step)
        if stride > 1 and len(p) > 1:
            grad = interleave(ctx.b, [grad] + [None] * (stride - 1), out_shape, axis)
            out_shape[axis] *= stride
    begins = [min(p[0], p[-1]) for p in picks]
    return [place(ctx.b, grad, out_shape, begins, shape)]


@register("Gather")
def gather(ctx: GradContext) -> list[str | None]:
    """dx[.., j, ..] = sum of dy[.., p, ..] over positions p where indices[p] == j.

    Distinct indices: dy plus one zero slot, gathered by the inverse index map (Pad + Gather).
    Repeated indices must add up: a MatMul with a constant 0/1 matrix of shape (n, len(indices)).
    """
    shape = ctx.shape(ctx.x[0])
    indices = ctx.value(ctx.x[1])
    if indices is None:
        raise UnsupportedAttributeError(
            ctx,
            f"its indices '{ctx.x[1]}' are computed at run time; only constant indices are "
            "supported",
        )
    axis = ctx.attr("axis", 0) % len(shape)
    n = shape[axis]
    flat = np.asarray(indices, dtype=np.int64).ravel() % n
    view = [math.prod(shape[:axis]), flat.size, math.prod(shape[axis + 1 :])]
    dy = ctx.b.Reshape(ctx.dy[0], ctx.b.ints(view))
    if len(np.unique(flat)) == flat.size:
        inverse = np.full(n, flat.size, dtype=np.int64)
        inverse[flat] = np.arange(flat.size)
        padded = ctx.b.Pad(dy, ctx.b.ints([0, 0, 0, 0, 1, 0]))
        grad = ctx.b.Gather(padded, ctx.b.const(inverse, hint="inverse"), axis=1)
    else:
        onehot = (np.arange(n)[:, None] == flat[None, :]).astype(ctx.dtype(ctx.x[0]))
        grad = ctx.b.MatMul(ctx.b.const(onehot, hint="gather_onehot"), dy)
    return [ctx.b.Reshape(grad, ctx.b.ints(shape)), None]


@register("Pad")
def pad(ctx: GradContext) -> list[str | None]:
    """Per axis: the centre of dy, plus what the mode copied out of x folded back onto it.

    constant: crop (negative pads, i.e. crops, get zeros back); edge: border slabs summed onto the
    first/last element; reflect: border slabs reversed onto x[1:p+1] / x[n-1-p:n-1]; wrap: border
    slabs added onto the opposite end.
    """
    shape = ctx.shape(ctx.x[0])
    rank = len(shape)
    mode = ctx.attr("mode", "constant")
    pads = required_ints(ctx, 1, "pads")
    axes = constant_ints(ctx, 3, "axes")
    axes = [a % rank for a in axes] if axes is not None else list(range(rank))
    before, after = [0] * rank, [0] * rank
    for i, axis in enumerate(axes):
        before[axis], after[axis] = pads[i], pads[len(axes) + i]
    if mode == "constant":
        return [_unpad_constant(ctx, shape, before, after)]
    if mode not in _FOLDS:
        raise UnsupportedAttributeError(ctx, f"mode='{mode}' is not supported")
    if min(before + after) < 0:
        raise UnsupportedAttributeError(ctx, f"negative pads with mode='{mode}' are not supported")
    grad = ctx.dy0
    current = list(ctx.shape(ctx.y[0]))
    for axis in reversed(range(rank)):
        if before[axis] or after[axis]:
            limit = shape[axis] - (1 if mode == "reflect" else 0)
            if mode != "edge" and max(before[axis], after[axis]) > limit:
                raise UnsupportedAttributeError(
                    ctx,
                    f"mode='{mode}' pads wider than the axis allow ({shape[axis]} on axis "
                    f"{axis}) are not supported",
                )
            grad = _FOLDS[mode](ctx, grad, current, axis, before[axis], shape[axis])
            current[axis] = shape[axis]
    return [grad]


def _unpad_constant(ctx: GradContext, shape, before, after) -> str:
    grad = ctx.dy0
    out_shape: Sequence[int] = ctx.shape(ctx.y[0])
    regrow_b = [max(-p, 0) for p in before]
    regrow_a = [max(-p, 0) for p in after]
    if any(regrow_b) or any(regrow_a):
        grad = ctx.b.Pad(grad, ctx.b.ints(regrow_b + regrow_a))
        out_shape = [s + p + q for s, p, q in zip(out_shape, regrow_b, regrow_a, strict=True)]
    return crop(ctx.b, grad, out_shape, [max(p, 0) for p in before], shape)


def _axis_slice(ctx: GradContext, t: str, axis: int, start: int, end: int, step: int = 1) -> str:
    b = ctx.b
    return b.Slice(t, b.ints([start]), b.ints([end]), b.ints([axis]), b.ints([step]))


def _axis_pad(ctx: GradContext, t: str, rank: int, axis: int, before: int, after: int) -> str:
    pads = [0] * (2 * rank)
    pads[axis], pads[rank + axis] = before, after
    return ctx.b.Pad(t, ctx.b.ints(pads))


def _fold_edge(ctx: GradContext, grad: str, shape: list[int], axis: int, p: int, n: int) -> str:
    """Edge padding copies x[0] p times and x[n-1] q times: their gradients are slab sums."""
    rank, q = len(shape), shape[axis] - n - p
    total = _axis_slice(ctx, grad, axis, p, p + n)
    if p:
        head = ctx.b.ReduceSum(_axis_slice(ctx, grad, axis, 0, p), ctx.b.ints([axis]), keepdims=1)
        total = ctx.b.Add(total, _axis_pad(ctx, head, rank, axis, 0, n - 1))
    if q:
        tail = _axis_slice(ctx, grad, axis, p + n, p + n + q)
        tail = ctx.b.ReduceSum(tail, ctx.b.ints([axis]), keepdims=1)
        total = ctx.b.Add(total, _axis_pad(ctx, tail, rank, axis, n - 1, 0))
    return total


def _fold_reflect(ctx: GradContext, grad: str, shape: list[int], axis: int, p: int, n: int) -> str:
    """Reflect padding: y[p-1-j] = x[1+j] and y[p+n+j] = x[n-2-j]."""
    rank, q = len(shape), shape[axis] - n - p
    total = _axis_slice(ctx, grad, axis, p, p + n)
    if p:
        head = _axis_slice(ctx, grad, axis, p - 1, -_BIG, -1)
        total = ctx.b.Add(total, _axis_pad(ctx, head, rank, axis, 1, n - 1 - p))
    if q:
        tail = _axis_slice(ctx, grad, axis, p + n + q - 1, p + n - 1, -1)
        total = ctx.b.Add(total, _axis_pad(ctx, tail, rank, axis, n - 1 - q, 1))
    return total


def _fold_wrap(ctx: GradContext, grad: str, shape: list[int], axis: int, p: int, n: int) -> str:
    """Wrap padding: y[j] = x[n-p+j] for the head, y[p+n+j] = x[j] for the tail."""
    rank, q = len(shape), shape[axis] - n - p
    total = _axis_slice(ctx, grad, axis, p, p + n)
    if p:
        head = _axis_slice(ctx, grad, axis, 0, p)
        total = ctx.b.Add(total, _axis_pad(ctx, head, rank, axis, n - p, 0))
    if q:
        tail = _axis_slice(ctx, grad, axis, p + n, p + n + q)
        total = ctx.b.Add(total, _axis_pad(ctx, tail, rank, axis, 0, n - q))
    return total


_FOLDS = {"edge": _fold_edge, "reflect": _fold_reflect, "wrap": _fold_wrap}
