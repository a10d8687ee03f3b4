"""Padding shared by convolutions and pools: TFLite knows SAME and VALID only, so ONNX's explicit
pads become SAME when they equal TensorFlow's SAME split, else an explicit PAD then VALID."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from edgesal.converters.tflite import layout
from edgesal.converters.tflite.context import Lowering

Pads = list[tuple[int, int]]  # (before, after) for H and W


def same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's SAME: output ceil(size/stride), the extra element of an odd total at the end."""
    span = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def onnx_pads(ctx: Lowering, a: dict, sizes, kernel, strides, dilations) -> Pads:
    """(before, after) per spatial axis from auto_pad / pads, as onnxruntime resolves them."""
    auto_pad = a.get("auto_pad", "NOTSET")
    nd = len(kernel)
    if auto_pad == "VALID":
        return [(0, 0)] * nd
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        result = []
        for i in range(nd):
            before, after = same_pads(sizes[i], kernel[i], strides[i], dilations[i])
            result.append((before, after) if auto_pad == "SAME_UPPER" else (after, before))
        return result
    if auto_pad != "NOTSET":
        raise ctx.fail(f"unknown auto_pad {auto_pad}")
    pads = list(a.get("pads", [0] * 2 * nd))
    return [(int(pads[i]), int(pads[i + nd])) for i in range(nd)]


def tflite_padding(
    ctx: Lowering,
    x: int,
    pads: Pads,
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    value: float = 0.0,
) -> tuple[int, str]:
    """(input, "SAME"|"VALID") realizing ``pads`` around NHWC tensor ``x``."""
    if all(p == (0, 0) for p in pads):
        return x, "VALID"
    sizes = ctx.physical_shape(x)[1:3]
    same = [same_pads(sizes[i], kernel[i], strides[i], dilations[i]) for i in range(2)]
    if list(pads) == same:
        return x, "SAME"
    return pad_nhwc(ctx, x, pads, value), "VALID"


def pad_nhwc(ctx: Lowering, x: int, pads: Pads, value: float = 0.0) -> int:
    """PAD (PADV2 for a non-zero ``value``) of the H and W axes; negative pads crop."""
    crops = [(max(-b, 0), max(-e, 0)) for b, e in pads]
    if any(c != (0, 0) for c in crops):
        shape = ctx.physical_shape(x)
        begin = [0, crops[0][0], crops[1][0], 0]
        size = [shape[0], shape[1] - sum(crops[0]), shape[2] - sum(crops[1]), shape[3]]
        x = ctx.op("SLICE", [x, ctx.ints(begin), ctx.ints(size)], size, ctx.flat.tensors[x].dtype)
    grow = [(max(b, 0), max(e, 0)) for b, e in pads]
    if all(g == (0, 0) for g in grow):
        return x
    shape = ctx.physical_shape(x)
    paddings = np.array([[0, 0], list(grow[0]), list(grow[1]), [0, 0]], dtype=np.int32)
    out_shape = [shape[0], shape[1] + sum(grow[0]), shape[2] + sum(grow[1]), shape[3]]
    dtype = ctx.flat.tensors[x].dtype
    if value == 0.0:
        return ctx.op("PAD", [x, ctx.const(paddings)], out_shape, dtype)
    fill = ctx.const(np.asarray([value], dtype=dtype))
    return ctx.op("PADV2", [x, ctx.const(paddings), fill], out_shape, dtype)


def spatial_attrs(ctx: Lowering, node, a: dict, kernel: Sequence[int]):
    """(strides, dilations) of a 2-D conv/pool node; other ranks are refused."""
    if len(kernel) != 2:
        raise ctx.fail(f"only 2-D {node.op_type} is supported (kernel {list(kernel)})")
    return list(a.get("strides", [1, 1])), list(a.get("dilations", [1, 1]))


def nhwc_input(ctx: Lowering, name: str) -> int:
    if len(ctx.shape(name)) != 4:
        raise ctx.fail(f"input '{name}' has rank {len(ctx.shape(name))}; only 4-D is supported")
    return ctx.tensor(name, layout.NHWC)
