"""MaxPool, AveragePool and the global pools, in NHWC.

MaxPool pads with the lowest float (PADV2) when its pads are not TensorFlow's SAME. AveragePool
whose divisor TFLite cannot express directly (count_include_pad, ceil_mode, odd pads) is the
VALID average of the zero-padded input times a constant per-position correction k*k / count.
"""

from __future__ import annotations

import math

import numpy as np

from edgesal.converters.tflite import layout
from edgesal.converters.tflite.context import Lowering
from edgesal.converters.tflite.ops.registry import attrs, lowers
from edgesal.converters.tflite.ops.spatial import (
    nhwc_input,
    onnx_pads,
    pad_nhwc,
    same_pads,
    spatial_attrs,
    tflite_padding,
)


def _geometry(ctx: Lowering, node, x: int):
    a = attrs(node)
    kernel = list(a["kernel_shape"])
    strides, dilations = spatial_attrs(ctx, node, a, kernel)
    if dilations != [1, 1]:
        raise ctx.fail(f"dilations {dilations} are not supported for pooling")
    sizes = ctx.physical_shape(x)[1:3]
    given = onnx_pads(ctx, a, sizes, kernel, strides, dilations)
    pads = given
    if a.get("ceil_mode", 0):
        pads = [_ceil_extra(sizes[i], kernel[i], strides[i], given[i]) for i in range(2)]
    return a, kernel, strides, pads, given


def _ceil_extra(size: int, kernel: int, stride: int, pad: tuple[int, int]) -> tuple[int, int]:
    """End padding that turns ceil_mode's output length into a floor-mode one.

    onnxruntime drops the last window when it would start inside the end padding.
    """
    before, after = pad
    length = size + before + after - kernel
    out = math.ceil(length / stride) + 1
    if (out - 1) * stride >= size + before:
        out -= 1
    return before, max(after, (out - 1) * stride + kernel - size - before)


def _options(kernel, strides, padding: str) -> dict:
    return {
        "padding": padding,
        "stride_w": int(strides[1]),
        "stride_h": int(strides[0]),
        "filter_width": int(kernel[1]),
        "filter_height": int(kernel[0]),
        "fused_activation_function": "NONE",
    }


@lowers("MaxPool")
def max_pool(ctx: Lowering, node) -> None:
    """MAX_POOL_2D; pads other than SAME by PADV2 with the lowest float, then VALID."""
    if len(node.output) > 1 and node.output[1]:
        raise ctx.fail("the Indices output of MaxPool is not supported")
    x = nhwc_input(ctx, node.input[0])
    _, kernel, strides, pads, _ = _geometry(ctx, node, x)
    lowest = float(np.finfo(ctx.flat.tensors[x].dtype).min)
    x, padding = tflite_padding(ctx, x, pads, kernel, strides, [1, 1], value=lowest)
    out = ctx.output(node.output[0], layout.NHWC)
    ctx.emit("MAX_POOL_2D", [x], [out], "Pool2DOptions", **_options(kernel, strides, padding))


@lowers("AveragePool")
def average_pool(ctx: Lowering, node) -> None:
    """AVERAGE_POOL_2D; divisors TFLite lacks: VALID over PAD, times a constant correction."""
    x = nhwc_input(ctx, node.input[0])
    a, kernel, strides, pads, given = _geometry(ctx, node, x)
    sizes = ctx.physical_shape(x)[1:3]
    include = bool(a.get("count_include_pad", 0))
    same = [same_pads(sizes[i], kernel[i], strides[i]) for i in range(2)]
    if all(p == (0, 0) for p in pads) or (pads == same and not include):
        x, padding = tflite_padding(ctx, x, pads, kernel, strides, [1, 1])
        out = ctx.output(node.output[0], layout.NHWC)
        ctx.emit(
            "AVERAGE_POOL_2D", [x], [out], "Pool2DOptions", **_options(kernel, strides, padding)
        )
        return
    dtype = ctx.flat.tensors[x].dtype
    padded = pad_nhwc(ctx, x, pads)
    shape = ctx.physical_shape(ctx.output(node.output[0], layout.NHWC))
    mean = ctx.op(
        "AVERAGE_POOL_2D",
        [padded],
        shape,
        dtype,
        "Pool2DOptions",
        **_options(kernel, strides, "VALID"),
    )
    counts = [
        _counts(sizes[i], shape[1 + i], kernel[i], strides[i], given[i], include) for i in range(2)
    ]
    scale = (kernel[0] * kernel[1]) / np.outer(counts[0], counts[1])
    factor = ctx.const(scale.reshape(1, shape[1], shape[2], 1).astype(dtype))
    ctx.emit("MUL", [mean, factor], [ctx.held(node.output[0])[0]])


def _counts(size, out, kernel, stride, pad, include) -> np.ndarray:
    """Divisor of each output position along one axis, as onnxruntime counts it."""
    before, after = pad
    starts = np.arange(out) * stride - before
    ends = np.minimum(starts + kernel, size + after)
    if not include:
        return np.minimum(ends, size) - np.maximum(starts, 0)
    return ends - starts


@lowers("GlobalAveragePool", "GlobalMaxPool")
def global_pool(ctx: Lowering, node) -> None:
    """MEAN / REDUCE_MAX over H and W (keep_dims)."""
    x = nhwc_input(ctx, node.input[0])
    code = "MEAN" if node.op_type == "GlobalAveragePool" else "REDUCE_MAX"
    out = ctx.output(node.output[0], layout.NHWC)
    ctx.emit(code, [x, ctx.ints([1, 2])], [out], "ReducerOptions", keep_dims=True)
