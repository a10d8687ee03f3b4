"""Conv -> CONV_2D / DEPTHWISE_CONV_2D; ConvTranspose -> TRANSPOSE_CONV (group 1) or zero
insertion + a flipped forward conv (grouped, depthwise, dilated); DepthToSpace, SpaceToDepth.

All in NHWC. Weights must be constants (after folding): TFLite filters are [O, kh, kw, I],
depthwise filters [1, kh, kw, C*multiplier].
"""

from __future__ import annotations

import itertools

import numpy as np

from edgesal.converters.tflite import layout
from edgesal.converters.tflite.context import Lowering
from edgesal.converters.tflite.ops.registry import attrs, inputs, lowers
from edgesal.converters.tflite.ops.spatial import (
    nhwc_input,
    onnx_pads,
    pad_nhwc,
    spatial_attrs,
    tflite_padding,
)
from edgesal.graph.idioms import zero_insertion


def _weight(ctx: Lowering, node) -> np.ndarray:
    value = ctx.value(node.input[1])
    if value is None:
        raise ctx.fail(f"its weight '{node.input[1]}' must be a constant")
    return np.asarray(value)


def _bias(ctx: Lowering, node, channels: int, dtype) -> np.ndarray | str:
    names = inputs(node)
    if len(names) < 3 or not names[2]:
        return np.zeros(channels, dtype=dtype)
    value = ctx.value(names[2])
    return names[2] if value is None else np.asarray(value, dtype=dtype)


@lowers("Conv")
def conv(ctx: Lowering, node) -> None:
    """CONV_2D / DEPTHWISE_CONV_2D (groups: SPLIT + CONV_2D + CONCATENATION), SAME/VALID or PAD.

    A depthwise conv over a zero insertion (the gradient of a strided depthwise conv) becomes
    :func:`_depthwise_phases`.
    """
    a = attrs(node)
    weight = _weight(ctx, node)
    strides, dilations = spatial_attrs(ctx, node, a, weight.shape[2:])
    x = nhwc_input(ctx, node.input[0])
    pads = onnx_pads(ctx, a, ctx.physical_shape(x)[1:3], weight.shape[2:], strides, dilations)
    source, stride = _zero_insertion(ctx, node.input[0])
    group = int(a.get("group", 1))
    if (
        source
        and group == weight.shape[0]
        and weight.shape[1] == 1
        and strides == dilations == [1, 1]
    ):
        _depthwise_phases(ctx, node, source, stride, weight, pads)
        return
    x, padding = tflite_padding(ctx, x, pads, weight.shape[2:], strides, dilations)
    bias = _bias(ctx, node, weight.shape[0], weight.dtype)
    out = ctx.output(node.output[0], layout.NHWC)
    emit_conv(ctx, x, weight, bias, int(a.get("group", 1)), strides, dilations, padding, out)


def conv_geometry(padding: str, strides, dilations) -> dict:
    """The padding, stride and dilation options CONV_2D and DEPTHWISE_CONV_2D share."""
    return {
        "padding": padding,
        "stride_h": int(strides[0]),
        "stride_w": int(strides[1]),
        "dilation_h_factor": int(dilations[0]),
        "dilation_w_factor": int(dilations[1]),
        "fused_activation_function": "NONE",
    }


def emit_conv(ctx, x, weight, bias, group, strides, dilations, padding, out) -> None:
    """CONV_2D, DEPTHWISE_CONV_2D, or one CONV_2D per group joined by CONCATENATION.

    ``weight`` is in ONNX layout [O, I/group, kh, kw]; ``bias`` an array or an ONNX tensor name
    (added after the conv).
    """
    o, ig = weight.shape[:2]
    channels = ctx.physical_shape(x)[3]
    late_bias = isinstance(bias, str)
    b = np.zeros(o, weight.dtype) if late_bias else bias
    target = ctx.temp(ctx.physical_shape(out), weight.dtype, "conv") if late_bias else out
    geometry = conv_geometry(padding, strides, dilations)
    if group == 1:
        filt = ctx.const(weight.transpose(0, 2, 3, 1))
        ctx.emit("CONV_2D", [x, filt, ctx.const(b)], [target], "Conv2DOptions", **geometry)
    elif ig == 1 and group == channels:
        filt = ctx.const(weight.transpose(1, 2, 3, 0))
        ctx.emit(
            "DEPTHWISE_CONV_2D",
            [x, filt, ctx.const(b)],
            [target],
            "DepthwiseConv2DOptions",
            depth_multiplier=o // channels,
            **geometry,
        )
    else:
        _grouped(ctx, x, weight, b, group, geometry, target)
    if late_bias:
        ctx.emit("ADD", [target, ctx.tensor(bias, [0], 1)], [out])


def _grouped(ctx, x, weight, bias, group, geometry, out) -> None:
    shape = ctx.physical_shape(x)
    part = [*shape[:3], shape[3] // group]
    pieces = [ctx.temp(part, weight.dtype, "group") for _ in range(group)]
    ctx.emit(
        "SPLIT", [ctx.const(np.asarray(3, np.int32)), x], pieces, "SplitOptions", num_splits=group
    )
    og = weight.shape[0] // group
    out_shape = ctx.physical_shape(out)
    results = []
    for g, piece in enumerate(pieces):
        w = weight[g * og : (g + 1) * og].transpose(0, 2, 3, 1)
        result = ctx.temp([*out_shape[:3], og], weight.dtype, "group_conv")
        b = ctx.const(bias[g * og : (g + 1) * og])
        ctx.emit("CONV_2D", [piece, ctx.const(w), b], [result], "Conv2DOptions", **geometry)
        results.append(result)
    ctx.emit(
        "CONCATENATION",
        results,
        [out],
        "ConcatenationOptions",
        axis=3,
        fused_activation_function="NONE",
    )


@lowers("ConvTranspose")
def conv_transpose(ctx: Lowering, node) -> None:
    """CONV_2D + DEPTH_TO_SPACE (sub-pixel), TRANSPOSE_CONV, or zero insertion + conv.

    y[j] = sum_{i,k: j = i*s + k*d - pad} x[i] w[k].

    - group 1, no dilation, equal strides: the sub-pixel form (:func:`_sub_pixel`), one CONV_2D
      and a DEPTH_TO_SPACE (XNNPACK's TRANSPOSE_CONV took ~10x longer on a 3-channel stem); when
      the output is exactly s times the input (the gradient of a stride-s conv on sizes it
      divides) a stride-1 CONV_2D of the exact window (:func:`exact_phases`) and no crop;
    - group 1, no dilation, unequal strides: TRANSPOSE_CONV over the full output (in-1)*s + k;
    - grouped or dilated: zero insertion (PAD on channels + DEPTH_TO_SPACE), then a stride-1
      conv with the flipped kernel.

    Each is then cropped to the pads (and output_padding added) by SLICE/PAD.
    """
    a = attrs(node)
    weight = _weight(ctx, node)
    kernel = weight.shape[2:]
    strides, dilations = spatial_attrs(ctx, node, a, kernel)
    group = int(a.get("group", 1))
    x = nhwc_input(ctx, node.input[0])
    n, h, w, c = ctx.physical_shape(x)
    out_hw = [ctx.shape(node.output[0])[2], ctx.shape(node.output[0])[3]]
    begins = _transpose_begin_pads(a, (h, w), out_hw, kernel, strides, dilations)
    o = weight.shape[1] * group
    bias = _bias(ctx, node, o, weight.dtype)
    if group == 1 and dilations == [1, 1] and strides[0] == strides[1]:
        stride = int(strides[0])
        phases = exact_phases(weight, stride, begins, (h, w), out_hw, common=True)
        if phases is not None:
            y = _sub_pixel_exact(ctx, x, phases, stride, bias)
            ctx.hold(node.output[0], y, layout.NHWC)
            return
        y, full = _sub_pixel(ctx, x, weight, stride)
        crops = [(-b, t - f + b) for b, f, t in zip(begins, full, out_hw, strict=True)]
        y = pad_nhwc(ctx, y, crops)
        if isinstance(bias, str) or np.any(bias):
            b = ctx.tensor(bias, [0], 1) if isinstance(bias, str) else ctx.const(bias)
            y = ctx.op("ADD", [y, b], ctx.physical_shape(y), weight.dtype)
        ctx.hold(node.output[0], y, layout.NHWC)
        return
    if group == 1 and dilations == [1, 1]:
        full = [(s - 1) * st + k for s, st, k in zip((h, w), strides, kernel, strict=True)]
        crops = [(-b, t - f + b) for b, f, t in zip(begins, full, out_hw, strict=True)]
        grows = any(after > 0 for _, after in crops)
        shape = [n, *full, o]
        inputs_ = [ctx.ints(shape), ctx.const(weight.transpose(1, 2, 3, 0)), x]
        if not isinstance(bias, str) and np.any(bias) and not grows:
            inputs_.append(ctx.const(bias))
            bias = None
        y = ctx.op(
            "TRANSPOSE_CONV",
            inputs_,
            shape,
            weight.dtype,
            "TransposeConvOptions",
            padding="VALID",
            stride_h=int(strides[0]),
            stride_w=int(strides[1]),
            fused_activation_function="NONE",
        )
        y = pad_nhwc(ctx, y, crops)
        if bias is not None and (isinstance(bias, str) or np.any(bias)):
            b = ctx.tensor(bias, [0], 1) if isinstance(bias, str) else ctx.const(bias)
            y = ctx.op("ADD", [y, b], ctx.physical_shape(y), weight.dtype)
        ctx.hold(node.output[0], y, layout.NHWC)
        return
    if strides[0] != strides[1]:
        raise ctx.fail(f"grouped or dilated ConvTranspose with unequal strides {strides}")
    z = zero_insert(ctx, x, int(strides[0]))
    span = [(k - 1) * d for k, d in zip(kernel, dilations, strict=True)]
    pads = [
        (sp - b, t + b - s * st)
        for sp, b, t, s, st in zip(span, begins, out_hw, (h, w), strides, strict=True)
    ]
    z = pad_nhwc(ctx, z, pads)
    flipped = _as_forward_conv(weight[:, :, ::-1, ::-1], group)
    plain = tuple(kernel) == (1, 1) and group == c == o and np.all(flipped == 1)
    if plain and not isinstance(bias, str) and not np.any(bias):
        ctx.hold(node.output[0], z, layout.NHWC)  # a pure zero insertion
        return
    out = ctx.output(node.output[0], layout.NHWC)
    emit_conv(ctx, z, flipped, bias, group, [1, 1], dilations, "VALID", out)


def _zero_insertion(ctx: Lowering, name: str) -> tuple[str | None, int]:
    """(dy, s) when ``name`` is a zero insertion of dy (:mod:`edgesal.graph.idioms.zero_insertion`):
    the strided depthwise conv gradient; (None, 0) otherwise."""
    node = ctx.producer(name)
    if node is None or len(node.input) < 2:
        return None, 0
    s = zero_insertion.stride(node, ctx.value(node.input[1]), ctx.shape(node.input[0]))
    return (node.input[0], s) if s else (None, 0)


def _depthwise_phases(ctx: Lowering, node, source: str, s: int, weight: np.ndarray, pads) -> None:
    """Conv(zero_insert(dy, s), v, pads) depthwise = ConvTranspose(dy, flip(v), stride s, begin
    pad K-1-pad_begin), computed without the zeros: phase (r_h, r_w) is a stride-1 depthwise conv
    of dy with the sub-kernel of :func:`_sub_pixel`; the s*s phases are concatenated on channels
    and interleaved by DEPTH_TO_SPACE. When the output is s times dy, each phase is a conv
    over dy with its own smallest window (:func:`exact_phases`; 1x1, 1x2, 2x1, 2x2 for
    MobileNetV2's 3x3 stride 2, all SAME): no shared PAD before and no SLICE after. (One
    multiplier-s*s depthwise conv and a 6-D TRANSPOSE measured slower on XNNPACK.)"""
    u = weight[:, :, ::-1, ::-1]  # [C, 1, K, K] flipped
    c, _, kh, kw = u.shape
    m = [-(-kh // s), -(-kw // s)]
    dy = ctx.tensor(source, layout.NHWC)
    n, h, w, _ = ctx.physical_shape(dy)
    out_hw = ctx.shape(node.output[0])[2:]
    begins = [k - 1 - p for k, (p, _) in zip((kh, kw), pads, strict=True)]
    bias = _bias(ctx, node, c, u.dtype)
    exact = exact_phases(u, s, begins, (h, w), out_hw, common=False)
    if exact is not None:
        late = isinstance(bias, str)
        conv_bias = ctx.const(np.zeros(c, u.dtype) if late else bias)
        phases = [_depthwise_phase(ctx, dy, phase, conv_bias, [n, h, w, c]) for phase in exact]
        y = _interleave(ctx, phases, s, [n, h, w, c], u.dtype)
        if late:
            y = ctx.op("ADD", [y, ctx.tensor(bias, [0], 1)], ctx.physical_shape(y), u.dtype)
        ctx.hold(node.output[0], y, layout.NHWC)
        return
    padded = pad_nhwc(ctx, dy, [(m[0] - 1, m[0] - 1), (m[1] - 1, m[1] - 1)])
    lengths = [h + m[0] - 1, w + m[1] - 1]
    crops = [(-b, t + b - s * n_) for b, t, n_ in zip(begins, out_hw, lengths, strict=True)]
    late = isinstance(bias, str) or any(after > 0 for _, after in crops)
    conv_bias = ctx.const(np.zeros(c, u.dtype) if late else bias)
    phases = []
    for rh, rw in itertools.product(range(s), range(s)):
        filt = np.zeros((1, m[0], m[1], c), u.dtype)
        for a, b in itertools.product(range(m[0]), range(m[1])):
            th, tw = (m[0] - 1 - a) * s + rh, (m[1] - 1 - b) * s + rw
            if th < kh and tw < kw:
                filt[0, a, b, :] = u[:, 0, th, tw]
        phases.append(
            ctx.op(
                "DEPTHWISE_CONV_2D",
                [padded, ctx.const(filt), conv_bias],
                [n, *lengths, c],
                u.dtype,
                "DepthwiseConv2DOptions",
                padding="VALID",
                stride_h=1,
                stride_w=1,
                depth_multiplier=1,
                dilation_h_factor=1,
                dilation_w_factor=1,
                fused_activation_function="NONE",
            )
        )
    y = pad_nhwc(ctx, _interleave(ctx, phases, s, [n, *lengths, c], u.dtype), crops)
    if late and (isinstance(bias, str) or np.any(bias)):
        b = ctx.tensor(bias, [0], 1) if isinstance(bias, str) else ctx.const(bias)
        y = ctx.op("ADD", [y, b], ctx.physical_shape(y), u.dtype)
    ctx.hold(node.output[0], y, layout.NHWC)


def _interleave(ctx: Lowering, phases: list[int], s: int, shape, dtype) -> int:
    """CONCATENATION of the s*s phase tensors ``shape`` [N, H, W, C] on channels, then
    DEPTH_TO_SPACE: phase r_h*s + r_w lands at (q*s + r_h, p*s + r_w)."""
    n, h, w, c = shape
    stacked = ctx.op(
        "CONCATENATION",
        phases,
        [n, h, w, c * s * s],
        dtype,
        "ConcatenationOptions",
        axis=3,
        fused_activation_function="NONE",
    )
    return ctx.op(
        "DEPTH_TO_SPACE",
        [stacked],
        [n, h * s, w * s, c],
        dtype,
        "DepthToSpaceOptions",
        block_size=s,
    )


def _depthwise_phase(ctx: Lowering, x: int, phase: Phase, bias: int, shape) -> int:
    """One stride-1 DEPTHWISE_CONV_2D of ``x`` for ``phase`` (kernel [C, 1, kh, kw])."""
    kernel, pads = phase
    x, padding = tflite_padding(ctx, x, pads, kernel.shape[2:], [1, 1], [1, 1])
    filt = kernel.transpose(1, 2, 3, 0)  # [1, kh, kw, C]
    return ctx.op(
        "DEPTHWISE_CONV_2D",
        [x, ctx.const(filt), bias],
        shape,
        filt.dtype,
        "DepthwiseConv2DOptions",
        padding=padding,
        stride_h=1,
        stride_w=1,
        depth_multiplier=1,
        dilation_h_factor=1,
        dilation_w_factor=1,
        fused_activation_function="NONE",
    )


Phase = tuple[np.ndarray, list[tuple[int, int]]]  # ConvTranspose-layout kernel, (before, after)


def exact_phases(
    weight: np.ndarray, s: int, begins, in_hw, out_hw, common: bool
) -> list[Phase] | None:
    """ConvTranspose(x, weight [I, O, kh, kw], stride s, begin pads) as s*s stride-1
    correlations of x, one per output phase (r_h, r_w) in row-major order, each the size of x;
    None unless the output is exactly s times the input (then nothing is cropped).

    Per axis y[s*q + r] = sum_t x[q + o] w[t] over the taps t = r + begin - s*o, so phase r is a
    correlation with taps at offsets o in [lo, hi] (widened to hold 0): a window of hi - lo + 1
    taps over x padded by (-lo, hi) (SAME when that is TensorFlow's split, else a PAD that
    XNNPACK fuses into the convolution). ``common``: one window holding every phase's offsets,
    for stacking the phases as output channels. Returns (kernel in ConvTranspose layout
    [I, O, kh', kw'], pads).
    """
    if [int(o) for o in out_hw] != [s * int(i) for i in in_hw]:
        return None
    taps = [
        [[((r + b - t) // s, t) for t in range(size) if (r + b - t) % s == 0] for r in range(s)]
        for b, size in zip(begins, weight.shape[2:], strict=True)
    ]
    spans = [[_span([o for o, _ in phase]) for phase in axis] for axis in taps]
    if common:
        spans = [[_span([o for phase in axis for o, _ in phase])] * s for axis in taps]
    phases = []
    for rh, rw in itertools.product(range(s), range(s)):
        (lh, hh), (lw, hw) = spans[0][rh], spans[1][rw]
        k = np.zeros((*weight.shape[:2], hh - lh + 1, hw - lw + 1), weight.dtype)
        for (oh, th), (ow, tw) in itertools.product(taps[0][rh], taps[1][rw]):
            k[:, :, oh - lh, ow - lw] = weight[:, :, th, tw]
        phases.append((k, [(-lh, hh), (-lw, hw)]))
    return phases


def _span(offsets: list[int]) -> tuple[int, int]:
    """(lo, hi) covering ``offsets`` and 0, so that x is padded and never cropped (a phase
    without taps gets a zero 1x1 window)."""
    return min([0, *offsets]), max([0, *offsets])


def _sub_pixel_exact(ctx: Lowering, x: int, phases: list[Phase], s: int, bias) -> int:
    """The phases of :func:`exact_phases` (one common window) stacked as the output channels of
    one stride-1 CONV_2D, interleaved by DEPTH_TO_SPACE: no SLICE after."""
    filt = np.concatenate([k.transpose(1, 0, 2, 3) for k, _ in phases])  # [s*s*O, I, kh, kw]
    _, h, w, _ = ctx.physical_shape(x)
    x, padding = tflite_padding(ctx, x, phases[0][1], filt.shape[2:], [1, 1], [1, 1])
    late = isinstance(bias, str)
    conv_bias = np.zeros(len(filt), filt.dtype) if late else np.tile(bias, s * s)
    y = _phase_conv(ctx, x, filt.transpose(0, 2, 3, 1), conv_bias, padding, [h, w], s)
    if late:
        y = ctx.op("ADD", [y, ctx.tensor(bias, [0], 1)], ctx.physical_shape(y), filt.dtype)
    return y


def _phase_conv(
    ctx: Lowering, x: int, filt: np.ndarray, bias: np.ndarray, padding: str, lengths, s: int
) -> int:
    """One stride-1 CONV_2D whose output channels are the s*s phases ((r_h*s + r_w)*O + o;
    ``filt`` [s*s*O, kh, kw, I]) over ``lengths`` positions, then DEPTH_TO_SPACE (DCR order)
    interleaving them into an s times larger grid."""
    n = ctx.physical_shape(x)[0]
    channels = filt.shape[0]
    y = ctx.op(
        "CONV_2D",
        [x, ctx.const(filt), ctx.const(bias)],
        [n, *lengths, channels],
        filt.dtype,
        "Conv2DOptions",
        padding=padding,
        stride_h=1,
        stride_w=1,
        dilation_h_factor=1,
        dilation_w_factor=1,
        fused_activation_function="NONE",
    )
    if s == 1:
        return y
    return ctx.op(
        "DEPTH_TO_SPACE",
        [y],
        [n, lengths[0] * s, lengths[1] * s, channels // (s * s)],
        filt.dtype,
        "DepthToSpaceOptions",
        block_size=s,
    )


def _sub_pixel(ctx: Lowering, x: int, weight: np.ndarray, s: int) -> tuple[int, list[int]]:
    """ConvTranspose (group 1, stride s, no pads) as a stride-1 conv + DEPTH_TO_SPACE.

    Output j = q*s + r takes the taps k = m*s + r (m = q - i >= 0), so phase r is a correlation
    of x with the sub-kernel w[(M-1-m')*s + r], m' < M = ceil(K/s), over x padded by M-1 on both
    sides; the s*s phases are the conv's output channel blocks (r_h*s + r_w)*C_out + c, which
    DEPTH_TO_SPACE (DCR order) interleaves. Returns the NHWC tensor and its spatial lengths
    s*(in + M - 1) (>= the full output (in-1)*s + K).
    """
    cin, cout, kh, kw = weight.shape
    m = [-(-kh // s), -(-kw // s)]
    sub = np.zeros((s, s, cout, m[0], m[1], cin), weight.dtype)
    for rh, rw, a, b in itertools.product(range(s), range(s), range(m[0]), range(m[1])):
        th, tw = (m[0] - 1 - a) * s + rh, (m[1] - 1 - b) * s + rw
        if th < kh and tw < kw:
            sub[rh, rw, :, a, b, :] = weight[:, :, th, tw].T
    filt = sub.reshape(s * s * cout, m[0], m[1], cin)
    padded = pad_nhwc(ctx, x, [(m[0] - 1, m[0] - 1), (m[1] - 1, m[1] - 1)])
    _, h, w, _ = ctx.physical_shape(x)
    lengths = [h + m[0] - 1, w + m[1] - 1]
    zeros = np.zeros(s * s * cout, weight.dtype)
    y = _phase_conv(ctx, padded, filt, zeros, "VALID", lengths, s)
    return y, [lengths[0] * s, lengths[1] * s]


def _transpose_begin_pads(a, sizes, outs, kernel, strides, dilations) -> list[int]:
    """Begin pads of a ConvTranspose as onnxruntime resolves auto_pad and output_shape."""
    auto_pad = a.get("auto_pad", "NOTSET")
    if auto_pad == "VALID":
        return [0, 0]
    if auto_pad == "NOTSET" and not a.get("output_shape"):
        pads = list(a.get("pads", [0, 0, 0, 0]))
        return [int(pads[0]), int(pads[1])]
    extra = list(a.get("output_padding", [0, 0]))
    result = []
    for i in range(2):
        span = dilations[i] * (kernel[i] - 1) + 1
        total = max(0, strides[i] * (sizes[i] - 1) + extra[i] + span - outs[i])
        result.append(total // 2 if auto_pad == "SAME_UPPER" else total - total // 2)
    return result


def _as_forward_conv(weight: np.ndarray, group: int) -> np.ndarray:
    """ConvTranspose weight [G*Cg, Og, kh, kw] -> Conv weight [G*Og, Cg, kh, kw]."""
    cin, og = weight.shape[:2]
    cg = cin // group
    grouped = weight.reshape(group, cg, og, *weight.shape[2:]).transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(grouped.reshape(group * og, cg, *weight.shape[2:]))


def zero_insert(ctx: Lowering, x: int, stride: int) -> int:
    """[N,H,W,C] -> [N,H*s,W*s,C] with x at (h*s, w*s) and zeros elsewhere: PAD the channels to
    C*s*s, then DEPTH_TO_SPACE (its first channel block lands at offset (0, 0))."""
    if stride == 1:
        return x
    n, h, w, c = ctx.physical_shape(x)
    dtype = ctx.flat.tensors[x].dtype
    paddings = np.array([[0, 0], [0, 0], [0, 0], [0, c * (stride * stride - 1)]], np.int32)
    wide = ctx.op("PAD", [x, ctx.const(paddings)], [n, h, w, c * stride * stride], dtype)
    return ctx.op(
        "DEPTH_TO_SPACE",
        [wide],
        [n, h * stride, w * stride, c],
        dtype,
        "DepthToSpaceOptions",
        block_size=stride,
    )


@lowers("DepthToSpace")
def depth_to_space(ctx: Lowering, node) -> None:
    """DCR is TFLite's order; CRD first permutes the channels with a GATHER."""
    a = attrs(node)
    block = int(a["blocksize"])
    x = nhwc_input(ctx, node.input[0])
    if a.get("mode", "DCR") == "CRD":
        c = ctx.physical_shape(x)[3] // (block * block)
        order = np.arange(c * block * block).reshape(c, block * block).T.ravel()
        x = ctx.op(
            "GATHER",
            [x, ctx.const(order.astype(np.int32))],
            ctx.physical_shape(x),
            ctx.flat.tensors[x].dtype,
            "GatherOptions",
            axis=3,
        )
    out = ctx.output(node.output[0], layout.NHWC)
    ctx.emit("DEPTH_TO_SPACE", [x], [out], "DepthToSpaceOptions", block_size=block)


@lowers("SpaceToDepth")
def space_to_depth(ctx: Lowering, node) -> None:
    """SPACE_TO_DEPTH (same DCR order as ONNX)."""
    block = int(attrs(node)["blocksize"])
    x = nhwc_input(ctx, node.input[0])
    out = ctx.output(node.output[0], layout.NHWC)
    ctx.emit("SPACE_TO_DEPTH", [x], [out], "SpaceToDepthOptions", block_size=block)
