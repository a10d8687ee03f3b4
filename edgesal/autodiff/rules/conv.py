"""Conv and ConvTranspose input gradients, emitted as forward convolutions chosen by measurement.

The input gradient of a convolution is a transposed convolution, but onnxruntime's ConvTranspose
kernel is 3-10x slower than its Conv on mobile-network layers (docs/rules_conv.md). So:

- ``Conv``: every stride is written as forward Convs over the output gradient. With stride s an
  input position i = s*q + r (phase r) receives exactly the kernel taps k with
  (k*d - r - pad) % s == 0, at a fixed offset from q; each phase is therefore one stride-1 Conv
  with a flipped sub-kernel, and the phases are interleaved back with Concat on inner axes (the
  fastest interleave onnxruntime has: DepthToSpace and Transpose cost 4-10x more). Stride 1 is the
  one-phase case: the flipped kernel with mirrored pads.
- ``ConvTranspose``: its input gradient is a plain strided Conv with the same weight.

Sub-kernels are derived from the forward weight inside the graph (Slice with negative steps,
Transpose, Reshape), so the saliency model shares the forward weights; onnxruntime constant-folds
these nodes at session creation, and they still work when the weight is a runtime tensor.
Weights and bias never receive gradients.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np
import onnx

from edgesal.autodiff.registry import GradContext, register
from edgesal.errors import InputError
from edgesal.graph.builder import Builder


@dataclass(frozen=True)
class Axis:
    """One spatial axis, auto_pad resolved: y[o] = sum_k x[o*s + k*d - pad] w[k]."""

    size: int  # length of the strided side (Conv input, ConvTranspose output)
    out: int  # length of the dense side (Conv output, ConvTranspose input)
    kernel: int
    stride: int
    dilation: int
    pad: int  # padding before the first element


@dataclass(frozen=True)
class Taps:
    """The kernel taps that reach one input phase of one axis, as a stride-1 correlation over dy.

    Phase r of ``Axis`` collects the positions i = s*q + r; it equals
    sum_{u<count} dy[q + u*dilation - pad_begin] * w[last - u*step] for q in [0, ceil(size/s)).
    """

    last: int
    step: int
    count: int
    dilation: int
    pad_begin: int
    pad_end: int


def phase_taps(axis: Axis, r: int) -> Taps | None:
    """Taps of phase ``r`` (None when no tap reaches it, e.g. a 1x1 kernel with stride 2).

    i = s*q + r meets tap k at output o = q - t_k with t_k = (k*d - r - pad) / s, an integer
    exactly when (k*d - r - pad) % s == 0; the t_k are evenly spaced, so a correlation with
    dilation (t_1 - t_0) and begin padding max(t_k) computes the sum.
    """
    s, d = axis.stride, axis.dilation
    ks = [k for k in range(axis.kernel) if (k * d - r - axis.pad) % s == 0]
    if not ks:
        return None
    ts = [(k * d - r - axis.pad) // s for k in ks]
    step = ks[1] - ks[0] if len(ks) > 1 else 1
    dilation = ts[1] - ts[0] if len(ts) > 1 else 1
    phases = -(-axis.size // s)
    pad_end = phases - axis.out - ts[-1] + dilation * (len(ks) - 1)
    return Taps(ks[-1], step, len(ks), dilation, ts[-1], pad_end)


def conv_axes(ctx: GradContext, x: str, y: str) -> list[Axis]:
    """Per-axis geometry of the Conv or ConvTranspose node in ``ctx``; ``x`` is the strided side."""
    w_shape = ctx.shape(ctx.x[1])
    sizes, outs = ctx.shape(x)[2:], ctx.shape(y)[2:]
    nd = len(sizes)
    kernel = tuple(ctx.attr("kernel_shape", w_shape[2:]))
    if kernel != tuple(w_shape[2:]):
        raise InputError(
            f"{ctx.node.op_type} node '{ctx.node.name}': kernel_shape {list(kernel)} does not "
            f"match the weight shape {list(w_shape)}"
        )
    strides = ctx.attr("strides", [1] * nd)
    dilations = ctx.attr("dilations", [1] * nd)
    pads = _begin_pads(ctx, kernel, strides, dilations)
    return [
        Axis(sizes[i], outs[i], kernel[i], strides[i], dilations[i], pads[i]) for i in range(nd)
    ]


def _begin_pads(ctx: GradContext, kernel, strides, dilations) -> list[int]:
    """Begin pads as onnxruntime resolves them (auto_pad, and ConvTranspose's output_shape)."""
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    transposed = ctx.node.op_type == "ConvTranspose"
    nd = len(kernel)
    if auto_pad == "VALID":
        return [0] * nd
    if auto_pad == "NOTSET" and not (transposed and ctx.attr("output_shape")):
        return list(ctx.attr("pads", [0] * 2 * nd))[:nd]
    if auto_pad not in ("NOTSET", "SAME_UPPER", "SAME_LOWER"):
        raise InputError(f"{ctx.node.op_type} node '{ctx.node.name}': unknown auto_pad {auto_pad}")
    pads = []
    for i in range(nd):
        span = dilations[i] * (kernel[i] - 1) + 1
        if transposed:
            small, large = ctx.shape(ctx.x[0])[2 + i], ctx.shape(ctx.y[0])[2 + i]
            extra = ctx.attr("output_padding", [0] * nd)[i]
            total = max(0, strides[i] * (small - 1) + extra + span - large)
        else:
            size = ctx.shape(ctx.x[0])[2 + i]
            total = max(0, (-(-size // strides[i]) - 1) * strides[i] + span - size)
        pads.append(total // 2 if auto_pad == "SAME_UPPER" else total - total // 2)
    return pads


@dataclass(frozen=True)
class ConvSpec:
    """A Conv node as its input gradient sees it: weight [G*Mg, Cg, k...], x [n, G*Cg, ...]."""

    weight: str
    weight_shape: tuple[int, ...]
    group: int
    axes: list[Axis]
    batch: int
    dtype: np.dtype

    @property
    def channels(self) -> int:
        return self.weight_shape[1] * self.group


STRATEGIES = ("phases", "zero_insert", "transpose")


def choose_strategy(spec: ConvSpec) -> str:
    """The fastest emission on onnxruntime CPU per layer kind (measured: docs/rules_conv.md).

    Stride 1 is one flipped Conv. Strided depthwise: zero insertion then that Conv (the phase
    interleave costs more than the zero taps). Strided dense with fewer than 8 input channels (an
    image stem): ConvTranspose, whose GEMM is k*k times taller than the phase Convs'. Other
    strided convs: one Conv per phase.
    """
    if all(a.stride == 1 for a in spec.axes):
        return "phases"
    out_per_group = spec.weight_shape[0] // spec.group
    if spec.weight_shape[1] == 1 and out_per_group == 1:
        return "zero_insert"
    if spec.group == 1 and spec.weight_shape[1] < 8:
        return "transpose"
    return "phases"


@register("Conv")
def conv(ctx: GradContext):
    """dx = conv_transpose(dy, w), emitted as the strategy :func:`choose_strategy` picks.

    y[n, g*Mg+m, o] = sum_{c,k} x[n, g*Cg+c, o*s + k*d - pad] w[g*Mg+m, c, k], so
    dx[n, g*Cg+c, i] = sum_{m,k: i = o*s + k*d - pad} dy[n, g*Mg+m, o] w[g*Mg+m, c, k].
    """
    extra = [None] * (len(ctx.x) - 1)
    if not ctx.needs[0]:
        return [None, *extra]
    x, w = ctx.x[:2]
    spec = ConvSpec(
        w,
        ctx.shape(w),
        ctx.attr("group", 1),
        conv_axes(ctx, x, ctx.y[0]),
        ctx.shape(x)[0],
        ctx.dtype(x),
    )
    return [conv_input_gradient(ctx.b, ctx.dy[0], spec, choose_strategy(spec)), *extra]


def conv_input_gradient(b: Builder, dy: str, spec: ConvSpec, strategy: str) -> str:
    """dx of a Conv by one of :data:`STRATEGIES`.

    - phases: input phase r (i = s*q + r) is one stride-1 Conv of dy with the flipped taps that
      reach it; the s^d phases are interleaved back by Concat on inner axes.
    - zero_insert: dy with s-1 zeros between elements (a 1x1 depthwise ConvTranspose of ones,
      a scatter without arithmetic) is the gradient of the same Conv at stride 1: one phase.
    - transpose: ConvTranspose(dy, w).
    """
    if strategy == "transpose":
        return _transposed(b, dy, spec)
    axes = spec.axes
    if strategy == "zero_insert":
        dy = _zero_insert(b, dy, spec)
        axes = [replace(a, out=a.stride * (a.out - 1) + 1, stride=1) for a in axes]
    w_t = swap_group_channels(b, spec.weight, spec.weight_shape, spec.group)
    phases = [-(-a.size // a.stride) for a in axes]
    tiles = {}
    for rs in itertools.product(*(range(a.stride) for a in axes)):
        taps = [phase_taps(a, r) for a, r in zip(axes, rs, strict=True)]
        if any(t is None for t in taps):
            tiles[rs] = _zeros(b, [spec.batch, spec.channels, *phases], spec.dtype)
        else:
            tiles[rs] = phase_conv(b, dy, w_t, axes, taps, spec.group)
    dx = interleave(b, tiles, phases, [a.stride for a in axes])
    have = [p * a.stride for p, a in zip(phases, axes, strict=True)]
    return _crop(
        b, dx, [0] * len(axes), [a.size - h for a, h in zip(axes, have, strict=True)], have
    )


def _zero_insert(b: Builder, dy: str, spec: ConvSpec) -> str:
    """dy[..., o, ...] moved to o*s, zeros between: ConvTranspose with a 1x1 kernel of ones."""
    m, nd = spec.weight_shape[0], len(spec.axes)
    ones = b.const(np.ones((m, 1) + (1,) * nd, dtype=spec.dtype), hint="ones")
    return b.ConvTranspose(dy, ones, group=m, strides=[a.stride for a in spec.axes])


def _transposed(b: Builder, dy: str, spec: ConvSpec) -> str:
    """ConvTranspose(dy, w), its end pads and output_padding chosen to give exactly x's size."""
    full = [a.stride * (a.out - 1) + a.dilation * (a.kernel - 1) + 1 - a.pad for a in spec.axes]
    ends = [max(f - a.size, 0) for f, a in zip(full, spec.axes, strict=True)]
    return b.ConvTranspose(
        dy,
        spec.weight,
        group=spec.group,
        strides=[a.stride for a in spec.axes],
        dilations=[a.dilation for a in spec.axes],
        pads=[a.pad for a in spec.axes] + ends,
        output_padding=[a.size - f + e for a, f, e in zip(spec.axes, full, ends, strict=True)],
    )


@register("ConvTranspose")
def conv_transpose(ctx: GradContext):
    """dx = conv(dy, w) with the node's strides, dilations, group and begin pads.

    y[n, g*Mg+m, j] += x[n, g*Cg+c, i] w[g*Cg+c, m, k] at j = i*s + k*d - pad, and w's layout
    [C, M/group, k...] is already Conv's [out, in/group, k...] for the reverse direction.
    """
    extra = [None] * (len(ctx.x) - 1)
    if not ctx.needs[0]:
        return [None, *extra]
    b, (x, w) = ctx.b, ctx.x[:2]
    axes = conv_axes(ctx, ctx.y[0], x)
    ends = [a.stride * (a.out - 1) + a.dilation * (a.kernel - 1) + 1 - a.size - a.pad for a in axes]
    dy = _crop(b, ctx.dy[0], [0] * len(axes), [min(e, 0) for e in ends], [a.size for a in axes])
    dx = b.Conv(
        dy,
        w,
        group=ctx.attr("group", 1),
        strides=[a.stride for a in axes],
        dilations=[a.dilation for a in axes],
        pads=[a.pad for a in axes] + [max(e, 0) for e in ends],
    )
    return [dx, *extra]


def swap_group_channels(b: Builder, w: str, shape: tuple[int, ...], group: int) -> str:
    """[G*Mg, Cg, k...] -> [G*Cg, Mg, k...]: a Conv weight read in the reverse direction."""
    m, cg, *kernel = shape
    mg, nd = m // group, len(kernel)
    if mg == 1 and cg == 1:
        return w
    if group == 1:
        return b.Transpose(w, perm=[1, 0, *range(2, 2 + nd)])
    split = b.Reshape(w, b.ints([group, mg, cg, *kernel]))
    swapped = b.Transpose(split, perm=[0, 2, 1, *range(3, 3 + nd)])
    return b.Reshape(swapped, b.ints([group * cg, mg, *kernel]))


def phase_conv(
    b: Builder, dy: str, w_t: str, axes: list[Axis], taps: list[Taps], group: int
) -> str:
    """One phase of dx: dy correlated with the flipped sub-kernel w_t[..., last::-step]."""
    sub = _sub_kernel(b, w_t, axes, taps)
    lo = [max(-t.pad_begin, 0) for t in taps]
    hi = [min(t.pad_end, 0) for t in taps]
    dy = _crop(b, dy, lo, hi, [a.out for a in axes])
    pads = [max(t.pad_begin, 0) for t in taps] + [max(t.pad_end, 0) for t in taps]
    return b.Conv(dy, sub, group=group, dilations=[t.dilation for t in taps], pads=pads)


def _sub_kernel(b: Builder, w_t: str, axes: list[Axis], taps: list[Taps]) -> str:
    """w_t[:, :, last::-step, ...] limited to ``count`` taps per axis (a Slice with steps < 0)."""
    picked = [(i, t) for i, (a, t) in enumerate(zip(axes, taps, strict=True)) if a.kernel > 1]
    if not picked:
        return w_t
    # the end is exclusive; below 0 it must read "past the front", which for a negative step is
    # any index < -kernel (ONNX adds the length to negative indices, then clamps to -1)
    ends = [t.last - t.step * t.count for _, t in picked]
    ends = [e if e >= 0 else -axes[i].kernel - 1 for e, (i, _) in zip(ends, picked, strict=True)]
    return b.Slice(
        w_t,
        b.ints([t.last for _, t in picked]),
        b.ints(ends),
        b.ints([2 + i for i, _ in picked]),
        b.ints([-t.step for _, t in picked]),
    )


def interleave(
    b: Builder, tiles: dict[tuple[int, ...], str], phases: list[int], strides: list[int]
) -> str:
    """out[..., s*q + r, ...] = tiles[r][..., q, ...] on every axis, by Concat on inner axes.

    Innermost axis first: the tiles of one row of phases are stacked on a new axis right after
    their spatial axis and merged into it by a Reshape, which onnxruntime does without a copy.
    """
    sizes = list(phases)
    for a in reversed(range(len(strides))):
        merged: dict[tuple[int, ...], str] = {}
        for prefix in itertools.product(*(range(s) for s in strides[:a])):
            row = [tiles[(*prefix, r)] for r in range(strides[a])]
            if len(row) == 1:
                merged[prefix] = row[0]
                continue
            lifted = b.ints([0, 0, *sizes[: a + 1], 1, *sizes[a + 1 :]])
            stacked = b.Concat(*[b.Reshape(t, lifted) for t in row], axis=3 + a)
            after = [*sizes[:a], sizes[a] * strides[a], *sizes[a + 1 :]]
            merged[prefix] = b.Reshape(stacked, b.ints([0, 0, *after]))
        sizes[a] *= strides[a]
        tiles = merged
    return tiles[()]


def _crop(b: Builder, t: str, lo: list[int], hi: list[int], sizes: list[int]) -> str:
    """Drop lo[i] leading and -hi[i] trailing elements of spatial axis i (hi <= 0)."""
    axes = [i for i in range(len(lo)) if lo[i] > 0 or hi[i] < 0]
    if not axes:
        return t
    return b.Slice(
        t,
        b.ints([lo[i] for i in axes]),
        b.ints([sizes[i] + hi[i] for i in axes]),
        b.ints([2 + i for i in axes]),
    )


def _zeros(b: Builder, shape: list[int], dtype: np.dtype) -> str:
    """A phase that no kernel tap reaches (kernel shorter than the stride): zeros at run time."""
    value = onnx.numpy_helper.from_array(np.zeros(1, dtype=dtype))
    return b.ConstantOfShape(b.ints(shape), value=value)
