"""Pooling: MaxPool, AveragePool, LpPool, GlobalAveragePool, GlobalMaxPool (any number of axes).

Window gradients are written without scatter. For kernel offset k (padded coordinate off = k*d)
window o reads xp[off + o*s]; writing a part back there is a stride-s placement, done in the
polyphase domain: off = a*s + r sends the part to phase r shifted by a blocks (Pad), the phases
are interleaved (Concat + Reshape) and the padding is cropped (Slice).

Both window ops are separable, so they are differentiated one spatial axis at a time: sum(k)
offsets instead of prod(k). A 2-D MaxPool is MaxPool along W, then along H (the intermediate is
recomputed with one forward MaxPool); taking the first maximum along W and then the first row
holding the window maximum is exactly PyTorch's rule: the gradient of a window goes to its first
maximal element in row-major scan order, padding never wins, and a pixel that wins several
overlapping windows receives the sum of their gradients.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import astuple, dataclass

import numpy as np

from edgesal.autodiff.registry import GradContext, register
from edgesal.autodiff.rules.shape import crop, interleave, place
from edgesal.errors import UnsupportedAttributeError


@dataclass(frozen=True)
class Windows:
    """Static pooling geometry over the spatial axes (all lists have one entry per axis)."""

    n: list[int]  # input length
    k: list[int]  # kernel
    s: list[int]  # stride
    d: list[int]  # dilation
    begin: list[int]  # padding in front
    end: list[int]  # padding behind (explicit or auto)
    out: list[int]  # output length, as the runtimes compute it

    @property
    def span(self) -> list[int]:
        """Padded length that holds every window, including ceil_mode's overhang."""
        return [
            max(n + b + e, (o - 1) * s + (k - 1) * d + 1)
            for n, b, e, o, s, k, d in zip(
                self.n, self.begin, self.end, self.out, self.s, self.k, self.d, strict=True
            )
        ]

    @property
    def blocks(self) -> list[int]:
        """Length of one polyphase component: ceil(span / s)."""
        return [-(-span // s) for span, s in zip(self.span, self.s, strict=True)]

    def trivial(self, axis: int) -> bool:
        """True when the pool leaves ``axis`` unchanged (kernel 1, stride 1, no padding)."""
        return self.k[axis] == self.s[axis] == 1 and self.begin[axis] == self.end[axis] == 0

    def swapped(self) -> Windows:
        """The same pool with the last two spatial axes exchanged."""
        return Windows(*(v[:-2] + [v[-1], v[-2]] for v in astuple(self)))

    def along(self, axis: int, lengths: list[int]) -> Windows:
        """The 1-D pool along ``axis`` alone; other axes pass through with their ``lengths``."""

        def pick(mine: list[int], other: list[int]) -> list[int]:
            return [m if j == axis else o for j, (m, o) in enumerate(zip(mine, other, strict=True))]

        ones, zeros = [1] * len(lengths), [0] * len(lengths)
        return Windows(
            n=pick(self.n, lengths),
            k=pick(self.k, ones),
            s=pick(self.s, ones),
            d=pick(self.d, ones),
            begin=pick(self.begin, zeros),
            end=pick(self.end, zeros),
            out=pick(self.out, lengths),
        )


def windows(ctx: GradContext) -> Windows:
    """Resolve kernel, strides, dilations, pads (auto_pad too) and the output size of a pool."""
    full = ctx.shape(ctx.x[0])
    n = list(full[2:])
    rank = len(n)
    k = list(ctx.attr("kernel_shape"))
    s = list(ctx.attr("strides", [1] * rank))
    d = list(ctx.attr("dilations", [1] * rank))
    pads = list(ctx.attr("pads", [0] * (2 * rank)))
    begin, end = pads[:rank], pads[rank:]
    auto = ctx.attr("auto_pad", "NOTSET")
    ceil = bool(ctx.attr("ceil_mode", 0))
    out = []
    for i in range(rank):
        reach = (k[i] - 1) * d[i] + 1
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            length = -(-n[i] // s[i])
            total = max(0, (length - 1) * s[i] + reach - n[i])
            small = total // 2
            begin[i], end[i] = (
                (small, total - small) if auto == "SAME_UPPER" else (total - small, small)
            )
        elif auto == "VALID":
            begin[i] = end[i] = 0
            length = (n[i] - reach) // s[i] + 1
        else:
            room = n[i] + begin[i] + end[i] - reach
            length = (-(-room // s[i]) if ceil else room // s[i]) + 1
            if ceil and (length - 1) * s[i] >= n[i] + begin[i]:
                length -= 1  # the last window may not start inside the end padding
        out.append(length)
    declared = ctx.info.dims(ctx.y[0])
    if (
        declared is not None
        and all(isinstance(v, int) for v in declared)
        and list(declared[2:]) != out
    ):
        raise UnsupportedAttributeError(
            ctx,
            f"onnxruntime and PyTorch compute the output size {out} (with ceil_mode a window may "
            f"not start in the end padding) but ONNX shape inference declares {list(declared[2:])}",
        )
    return Windows(n, k, s, d, begin, end, out)


def scatter_windows(ctx: GradContext, parts: dict[tuple[int, ...], str], w: Windows) -> str:
    """sum_k place(parts[k] at xp[k*d + o*s]), cropped to x: the transpose of window extraction.

    ``parts`` maps kernel offsets to tensors shaped like the pooled output (N, C, out...).
    """
    b = ctx.b
    lead = list(ctx.shape(ctx.x[0])[:2])
    blocks = w.blocks
    phases: dict[tuple[int, ...], str] = {}
    for offset, part in parts.items():
        taps = [k * d for k, d in zip(offset, w.d, strict=True)]
        residue = tuple(t % s for t, s in zip(taps, w.s, strict=True))
        shift = [t // s for t, s in zip(taps, w.s, strict=True)]
        placed = place(b, part, lead + w.out, [0, 0] + shift, lead + blocks)
        phases[residue] = b.Add(phases[residue], placed) if residue in phases else placed
    shape = lead + blocks
    for i in reversed(range(len(blocks))):
        stride = w.s[i]
        if stride == 1:
            continue
        grouped: dict[tuple[int, ...], list[str | None]] = {}
        for residue, t in phases.items():
            grouped.setdefault(residue[:i] + residue[i + 1 :], [None] * stride)[residue[i]] = t
        phases = {
            key[:i] + (0,) + key[i:]: interleave(b, parts_, shape, 2 + i)
            for key, parts_ in grouped.items()
        }
        shape[2 + i] *= stride
    (full,) = phases.values()
    return crop(b, full, shape, [0, 0] + w.begin, lead + w.n)


def scatter_uniform(ctx: GradContext, g: str, w: Windows) -> str:
    """sum over all offsets k of place(g at k*d + o*s): the transpose of an all-ones window sum.

    With stride 1 it is a window sum itself (:func:`window_sum_stride1`); otherwise the
    all-ones window is separable and is placed one spatial axis at a time: sum(k) placements
    instead of prod(k).
    """
    before = [k - 1 - b for k, b in zip(w.k, w.begin, strict=True)]
    after = [n - o + b for n, o, b in zip(w.n, w.out, w.begin, strict=True)]
    if all(s == d == 1 for s, d in zip(w.s, w.d, strict=True)) and min(before + after) >= 0:
        return window_sum_stride1(ctx, g, w, before, after)
    lengths = list(w.out)
    for i in range(len(w.n)):
        along = w.along(i, lengths)
        parts = {tuple(k if j == i else 0 for j in range(len(w.n))): g for k in range(w.k[i])}
        g = scatter_windows(ctx, parts, along)
        lengths[i] = w.n[i]
    return g


def window_sum_stride1(ctx: GradContext, g: str, w: Windows, before, after) -> str:
    """Stride 1: the transposed window sum is itself a window sum of g padded by k-1-pad.

    dx[i] = sum_{t<k} g[i + pad - t] = prod(k) * AveragePool(Pad(g)) with every window full.
    """
    b = ctx.b
    padded = b.Pad(g, b.ints([0, 0] + before + [0, 0] + after))
    pooled = b.AveragePool(padded, kernel_shape=w.k, count_include_pad=1)
    return b.Mul(pooled, ctx.scalar(float(math.prod(w.k)), ctx.x[0]))


@register("MaxPool")
def max_pool(ctx: GradContext) -> list[str | None]:
    """dx through y = pool_0(pool_1(... pool_last(x))): one 1-D max pool per spatial axis.

    Stages run innermost axis first. Each pads its input with a value below min(x) (padding
    never equals a maximum, and the padded tensor keeps a sane range for quantization, unlike
    -inf), recomputes its output with a padding-free forward MaxPool and is differentiated by
    :func:`max_pool_axis`.
    """
    w = windows(ctx)
    if tiles(w):
        return [max_pool_blocks(ctx, w)]
    b = ctx.b
    lead = list(ctx.shape(ctx.x[0])[:2])
    lengths = list(w.n)
    geometries = []  # 1-D pools, innermost axis first
    for axis in reversed(range(len(w.n))):
        if not w.trivial(axis):
            geometries.append(w.along(axis, lengths))
            lengths[axis] = w.out[axis]
    below = None
    if any(g.span != g.n for g in geometries):
        lowest = b.ReduceMin(ctx.x[0], keepdims=0)
        below = b.Sub(lowest, b.Max(b.Abs(lowest), ctx.scalar(1.0, ctx.x[0])))
    stages = []  # (padded input, geometry, output)
    source = ctx.x[0]
    for j, g in enumerate(geometries):
        padded = place(b, source, lead + g.n, [0, 0] + g.begin, lead + g.span, below)
        if j + 1 == len(geometries):
            source = ctx.y[0]
        else:
            source = b.MaxPool(padded, kernel_shape=g.k, strides=g.s, dilations=g.d)
        stages.append((padded, g, source))
    grad = ctx.dy0
    for padded, g, output in reversed(stages):
        grad = max_pool_axis(ctx, padded, output, grad, g)
    return [grad]


def tiles(w: Windows) -> bool:
    """2-D windows that tile the input exactly: kernel = stride, no padding or dilation."""
    return (
        len(w.n) == 2
        and w.k == w.s
        and w.s[0] == w.s[1] > 1
        and all(d == 1 for d in w.d)
        and not any(w.begin + w.end)
        and [o * s for o, s in zip(w.out, w.s, strict=True)] == w.n
    )


def max_pool_blocks(ctx: GradContext, w: Windows) -> str:
    """Gradient of a tiling max pool (VGG's and BlazeFace's 2x2 stride 2) on the s*s taps at once.

    SpaceToDepth puts tap (r_h, r_w) of every window in channel block r_h*s + r_w; in that (row-
    major) order dy goes to the first tap equal to the maximum: hit = Equal(tap, y), part =
    remaining * hit, remaining -= part; DepthToSpace puts the parts back. Same result as the
    per-axis form; on TFLite every step stays in XNNPACK on quarter-size tensors (no strided
    slices, no interleaves): BlazeFace's saliency ~25% faster there.
    """
    b = ctx.b
    s = w.s[0]
    channels = ctx.shape(ctx.x[0])[1]
    dtype = ctx.info.dtype(ctx.x[0])
    taps = b.SpaceToDepth(ctx.x[0], blocksize=s)
    remaining, parts = ctx.dy[0], []
    for k in range(s * s):
        if k + 1 == s * s:
            parts.append(remaining)  # no earlier tap held the maximum: the last one does
            break
        tap = b.Slice(taps, b.ints([k * channels]), b.ints([(k + 1) * channels]), b.ints([1]))
        parts.append(b.Mul(remaining, b.Cast(b.Equal(tap, ctx.y[0]), to=dtype)))
        remaining = b.Sub(remaining, parts[-1])
    return b.DepthToSpace(b.Concat(*parts, axis=1), blocksize=s, mode="DCR")


def innermost_strided(w: Windows) -> bool:
    """Is this a strided 1-D pool along the last of several axes?

    onnxruntime runs strided Slices and interleaves of the innermost axis ~10x slower than row
    copies, so such a pool is differentiated on transposed data (:func:`on_transposed`).
    """
    return len(w.n) > 1 and w.s[-1] > 1 and w.k[-2] == w.s[-2] == 1


def on_transposed(ctx: GradContext, rule, tensors: list[str], w: Windows) -> str:
    """rule(*tensors^T, swapped geometry)^T, with ^T exchanging the last two axes."""
    rank = len(w.n) + 2
    perm = list(range(rank - 2)) + [rank - 1, rank - 2]
    flipped = [ctx.b.Transpose(t, perm=perm) for t in tensors]
    return ctx.b.Transpose(rule(ctx, *flipped, w.swapped()), perm=perm)


def max_pool_axis(ctx: GradContext, xp: str, y: str, dy: str, w: Windows) -> str:
    """Gradient of a pool of the padded ``xp``: dy goes to the first tap equal to the maximum.

    For each offset in order: hit = Equal(view_k, y); part = remaining * hit; remaining -=
    part. Masks are applied with Cast + Mul, which onnxruntime runs ~15x faster than Where.
    """
    if innermost_strided(w):
        return on_transposed(ctx, max_pool_axis, [xp, y, dy], w)
    b = ctx.b
    dtype = ctx.info.dtype(ctx.x[0])
    axes = b.ints(range(2, 2 + len(w.n)))
    steps = [] if all(s == 1 for s in w.s) else [b.ints(w.s)]
    offsets = list(itertools.product(*(range(k) for k in w.k)))
    remaining, parts = dy, {}
    for index, offset in enumerate(offsets):
        starts = [k * d for k, d in zip(offset, w.d, strict=True)]
        ends = [t + (o - 1) * s + 1 for t, o, s in zip(starts, w.out, w.s, strict=True)]
        view = b.Slice(xp, b.ints(starts), b.ints(ends), axes, *steps)
        parts[offset] = b.Mul(remaining, b.Cast(b.Equal(view, y), to=dtype))
        if index + 1 < len(offsets):
            remaining = b.Sub(remaining, parts[offset])
    return scatter_windows(ctx, parts, w)


def pool_counts(ctx: GradContext, w: Windows) -> np.ndarray:
    """Divisor of every AveragePool output (out...): taps inside x, or inside the padded extent."""
    include_pad = bool(ctx.attr("count_include_pad", 0))
    per_axis = []
    for i in range(len(w.n)):
        taps = np.arange(w.out[i])[:, None] * w.s[i] + np.arange(w.k[i])[None, :] * w.d[i]
        if include_pad:
            inside = taps < w.n[i] + w.begin[i] + w.end[i]
        else:
            inside = (taps >= w.begin[i]) & (taps < w.begin[i] + w.n[i])
        per_axis.append(inside.sum(axis=1))
    counts = per_axis[0]
    for c in per_axis[1:]:
        counts = np.multiply.outer(counts, c)
    return counts


@register("AveragePool")
def average_pool(ctx: GradContext) -> list[str | None]:
    """dx = sum_k place_k(dy / count): every tap of a window gets the same share of dy."""
    w = windows(ctx)
    counts = pool_counts(ctx, w)
    dtype = ctx.dtype(ctx.x[0])
    if np.all(counts == counts.flat[0]):
        g = ctx.b.Mul(ctx.dy[0], ctx.scalar(1.0 / counts.flat[0], ctx.x[0]))
    else:
        g = ctx.b.Mul(ctx.dy[0], ctx.b.const((1.0 / counts).astype(dtype), hint="inv_count"))
    return [scatter_uniform(ctx, g, w)]


@register("LpPool")
def lp_pool(ctx: GradContext) -> list[str | None]:
    """y = (sum |x|^p)^(1/p) over a window: dx = sign(x)|x|^(p-1) * sum_k place_k(dy * y^(1-p)).

    Windows whose norm is 0 pass no gradient (the subgradient PyTorch's norm uses).
    """
    b = ctx.b
    x, y = ctx.x[0], ctx.y[0]
    p = float(ctx.attr("p", 2))
    w = windows(ctx)
    zero = ctx.scalar(0.0, x)
    is_zero = b.Equal(y, zero)
    safe = b.Where(is_zero, ctx.scalar(1.0, x), y)
    scale = (
        b.Div(ctx.dy[0], safe) if p == 2 else b.Mul(ctx.dy[0], b.Pow(safe, ctx.scalar(1 - p, x)))
    )
    g = b.Where(is_zero, zero, scale)
    spread = scatter_uniform(ctx, g, w)
    if p == 1:
        local = b.Sign(x)
    elif p == 2:
        local = x
    else:
        local = b.Mul(b.Sign(x), b.Pow(b.Abs(x), ctx.scalar(p - 1, x)))
    return [b.Mul(spread, local)]


@register("GlobalAveragePool")
def global_average_pool(ctx: GradContext) -> list[str | None]:
    """dx = dy / (number of spatial positions), broadcast over them."""
    shape = ctx.shape(ctx.x[0])
    scaled = ctx.b.Mul(ctx.dy[0], ctx.scalar(1.0 / math.prod(shape[2:]), ctx.x[0]))
    return [ctx.b.Expand(scaled, ctx.b.ints(shape))]


@register("GlobalMaxPool")
def global_max_pool(ctx: GradContext) -> list[str | None]:
    """dx = dy at the first maximum in scan order (ArgMax's tie rule, as MaxPool), else 0."""
    b = ctx.b
    shape = ctx.shape(ctx.x[0])
    flat = [shape[0], shape[1], math.prod(shape[2:])]
    winner = b.ArgMax(b.Reshape(ctx.x[0], b.ints(flat)), axis=2, keepdims=1)
    hit = b.Equal(b.const(np.arange(flat[2], dtype=np.int64), hint="positions"), winner)
    dy = b.Reshape(ctx.dy[0], b.ints(flat[:2] + [1]))
    picked = b.Mul(b.Cast(hit, to=ctx.info.dtype(ctx.x[0])), dy)
    return [b.Reshape(picked, b.ints(shape))]
