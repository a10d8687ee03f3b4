"""Conv and ConvTranspose input gradients, emitted as the operators onnxruntime runs fastest.

The input gradient of a convolution is a transposed convolution, but onnxruntime's ConvTranspose
takes 2-4x the kernel time of the equivalent Conv on stride-1 layers and 1.6-3.6x that of zero
insertion + Conv on strided depthwise ones (benchmarks/bench_rules.py, docs/rules_conv.md). So a
Conv's gradient is, by layer kind (:func:`choose_strategy`):

- stride 1: a Conv with the kernel flipped, in/out channels swapped per group and mirrored pads;
- strided depthwise: dy with s-1 zeros inserted between elements, then that stride-1 Conv;
- other strided convs: ConvTranspose, as fast as the alternatives there.

A ConvTranspose's gradient is a plain strided Conv with the same weight. Transformed weights are
derived from the forward weight inside the graph (Slice with negative steps, Transpose, Reshape),
so the saliency model shares the forward weights; onnxruntime constant-folds these nodes at
session creation, and they still work when the weight is a runtime tensor. Weights and bias never
receive gradients.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from edgesal.autodiff.registry import GradContext, register
from edgesal.errors import InputError
from edgesal.graph.builder import Builder
from edgesal.graph.idioms import zero_insertion


@dataclass(frozen=True)
class Axis:
    """One spatial axis, auto_pad resolved: y[o] = sum_k x[o*s + k*d - pad] w[k]."""

    size: int  # length of the strided side (Conv input, ConvTranspose output)
    out: int  # length of the other side (Conv output, ConvTranspose input)
    kernel: int
    stride: int
    dilation: int
    pad: int  # padding before the first element

    @property
    def span(self) -> int:
        """Extent of the dilated kernel."""
        return self.dilation * (self.kernel - 1) + 1


@dataclass(frozen=True)
class ConvSpec:
    """A Conv as its input gradient sees it: weight [G*Mg, Cg, k...], input [batch, G*Cg, ...]."""

    weight: str
    weight_shape: tuple[int, ...]
    group: int
    axes: tuple[Axis, ...]
    dtype: np.dtype

    @property
    def depthwise(self) -> bool:
        return self.weight_shape[1] == 1 and self.weight_shape[0] == self.group


STRATEGIES = ("flip", "zero_insert", "transpose")


def choose_strategy(spec: ConvSpec) -> str:
    """The fastest of :data:`STRATEGIES` on onnxruntime CPU for this layer kind (measured)."""
    if all(a.stride == 1 for a in spec.axes):
        return "flip"
    return "zero_insert" if spec.depthwise else "transpose"


@register("Conv")
def conv(ctx: GradContext) -> list[str | None]:
    """dx = conv_transpose(dy, w), emitted as the strategy :func:`choose_strategy` picks.

    y[n, g*Mg+m, o] = sum_{c,k} x[n, g*Cg+c, o*s + k*d - pad] w[g*Mg+m, c, k], so
    dx[n, g*Cg+c, i] = sum_{m,k: i = o*s + k*d - pad} dy[n, g*Mg+m, o] w[g*Mg+m, c, k].
    """
    extra = [None] * (len(ctx.x) - 1)
    if not ctx.needs[0]:
        return [None, *extra]
    x, w = ctx.x[:2]
    group = ctx.attr("group", 1)
    spec = ConvSpec(w, ctx.shape(w), group, _conv_axes(ctx, x, ctx.y[0]), ctx.dtype(x))
    return [conv_input_gradient(ctx.b, ctx.dy0, spec, choose_strategy(spec)), *extra]


@register("ConvTranspose")
def conv_transpose(ctx: GradContext) -> list[str | None]:
    """dx = conv(dy, w) with the node's strides, dilations, group and begin pads.

    y[n, g*Mg+m, j] += x[n, g*Cg+c, i] w[g*Cg+c, m, k] at j = i*s + k*d - pad; w's layout
    [C, M/group, k...] is already Conv's [out, in/group, k...] for the reverse direction.
    Output positions past the last one any x reaches (output_shape, output_padding) are cut.
    """
    extra = [None] * (len(ctx.x) - 1)
    if not ctx.needs[0]:
        return [None, *extra]
    x, w = ctx.x[:2]
    axes = _conv_axes(ctx, ctx.y[0], x)
    ends = [a.stride * (a.out - 1) + a.span - a.size - a.pad for a in axes]
    dy = _crop(ctx.b, ctx.dy0, [0] * len(axes), [min(e, 0) for e in ends], [a.size for a in axes])
    dx = ctx.b.Conv(
        dy,
        w,
        group=ctx.attr("group", 1),
        strides=[a.stride for a in axes],
        dilations=[a.dilation for a in axes],
        pads=[a.pad for a in axes] + [max(e, 0) for e in ends],
    )
    return [dx, *extra]


def conv_input_gradient(b: Builder, dy: str, spec: ConvSpec, strategy: str) -> str:
    """dx of a Conv by one of :data:`STRATEGIES` (``flip`` needs stride 1).

    - flip: dx[i] = sum_u dy[i + u*d - (d*(k-1) - pad)] w[k-1-u], a Conv with the flipped kernel.
    - zero_insert: dy spread to o*s with zeros between (a 1x1 depthwise ConvTranspose of ones:
      a scatter without arithmetic) is the output gradient of the same Conv at stride 1: flip.
    - transpose: ConvTranspose(dy, w).
    """
    if strategy == "transpose":
        return _transposed(b, dy, spec)
    if strategy == "zero_insert":
        dy = _zero_insert(b, dy, spec)
        spec = replace(
            spec,
            axes=tuple(replace(a, out=a.stride * (a.out - 1) + 1, stride=1) for a in spec.axes),
        )
    elif strategy != "flip" or any(a.stride != 1 for a in spec.axes):
        raise ValueError(f"strategy {strategy!r} does not apply to strides {spec.axes}")
    return _flipped(b, dy, spec)


def _flipped(b: Builder, dy: str, spec: ConvSpec) -> str:
    """Stride 1: Conv(dy, flip(w^T)) with begin pad d*(k-1) - pad; negative pads crop dy."""
    axes = spec.axes
    begin = [a.span - 1 - a.pad for a in axes]
    end = [a.size - a.out + a.pad for a in axes]  # output length = out + begin + end - span + 1
    dy = _crop(b, dy, [max(-p, 0) for p in begin], [min(p, 0) for p in end], [a.out for a in axes])
    w = _flip(b, _swap_group_channels(b, spec.weight, spec.weight_shape, spec.group), axes)
    return b.Conv(
        dy,
        w,
        group=spec.group,
        dilations=[a.dilation for a in axes],
        pads=[max(p, 0) for p in begin] + [max(p, 0) for p in end],
    )


def _zero_insert(b: Builder, dy: str, spec: ConvSpec) -> str:
    """dy[..., o, ...] moved to o*s with zeros between (:mod:`.idioms.zero_insertion`)."""
    strides = [a.stride for a in spec.axes]
    return zero_insertion.emit(b, dy, spec.weight_shape[0], strides, spec.dtype)


def _transposed(b: Builder, dy: str, spec: ConvSpec) -> str:
    """ConvTranspose(dy, w); end pads and output_padding give exactly the input's size."""
    full = [a.stride * (a.out - 1) + a.span - a.pad for a in spec.axes]
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


def _swap_group_channels(b: Builder, w: str, shape: tuple[int, ...], group: int) -> str:
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


def _flip(b: Builder, w: str, axes: tuple[Axis, ...]) -> str:
    """w[:, :, ::-1, ...]: a Slice with step -1 (ends below -kernel mean "past the front")."""
    flipped = [i for i, a in enumerate(axes) if a.kernel > 1]
    if not flipped:
        return w
    return b.Slice(
        w,
        b.ints([-1] * len(flipped)),
        b.ints([-axes[i].kernel - 1 for i in flipped]),
        b.ints([2 + i for i in flipped]),
        b.ints([-1] * len(flipped)),
    )


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


def _conv_axes(ctx: GradContext, strided: str, other: str) -> tuple[Axis, ...]:
    """Per-axis geometry of the node in ``ctx``; ``strided`` is the tensor on the Axis.size side."""
    w_shape = ctx.shape(ctx.x[1])
    sizes, outs = ctx.shape(strided)[2:], ctx.shape(other)[2:]
    kernel = tuple(ctx.attr("kernel_shape", w_shape[2:]))
    if kernel != tuple(w_shape[2:]):
        raise InputError(
            f"{_node(ctx)}: kernel_shape {list(kernel)} does not match the weight shape "
            f"{list(w_shape)}"
        )
    nd = len(kernel)
    strides = ctx.attr("strides", [1] * nd)
    dilations = ctx.attr("dilations", [1] * nd)
    pads = _begin_pads(ctx, kernel, strides, dilations)
    return tuple(
        Axis(sizes[i], outs[i], kernel[i], strides[i], dilations[i], pads[i]) for i in range(nd)
    )


def _begin_pads(ctx: GradContext, kernel, strides, dilations) -> list[int]:
    """Begin pads as onnxruntime resolves them (auto_pad; ConvTranspose's output_shape wins)."""
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    if auto_pad not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        raise InputError(f"{_node(ctx)}: unknown auto_pad {auto_pad}")
    transposed = ctx.node.op_type == "ConvTranspose"
    nd = len(kernel)
    if not (auto_pad.startswith("SAME") or (transposed and ctx.attr("output_shape"))):
        return [0] * nd if auto_pad == "VALID" else list(ctx.attr("pads", [0] * 2 * nd))[:nd]
    pads = []
    for i in range(nd):
        span = dilations[i] * (kernel[i] - 1) + 1
        if transposed:  # total = natural output length - requested output length
            small, large = ctx.shape(ctx.x[0])[2 + i], ctx.shape(ctx.y[0])[2 + i]
            extra = ctx.attr("output_padding", [0] * nd)[i]
            total = max(0, strides[i] * (small - 1) + extra + span - large)
        else:  # SAME: output length ceil(size / stride)
            size = ctx.shape(ctx.x[0])[2 + i]
            total = max(0, (-(-size // strides[i]) - 1) * strides[i] + span - size)
        pads.append(total // 2 if auto_pad == "SAME_UPPER" else total - total // 2)
    return pads


def _node(ctx: GradContext) -> str:
    return f"{ctx.node.op_type} node '{ctx.node.name}' (output {ctx.node.output[0]})"
