"""Resize in NHWC: RESIZE_BILINEAR where TFLite's formula is ONNX's (linear, half_pixel /
align_corners / asymmetric, scale = out/in); anything else exactly as onnxruntime computes it:
nearest as a GATHER of the source rows and columns, linear and cubic as constant interpolation
matrices applied by BATCH_MATMUL along H and W (:mod:`edgesal.graph.idioms.interpolation`)."""

from __future__ import annotations

import numpy as np

from edgesal.converters.tflite import layout
from edgesal.converters.tflite.context import Lowering
from edgesal.converters.tflite.ops.registry import attrs, inputs, lowers
from edgesal.graph.idioms.interpolation import Axis, interpolation_matrix

_BILINEAR = {
    "half_pixel": (False, True),
    "pytorch_half_pixel": (False, True),
    "align_corners": (True, False),
    "asymmetric": (False, False),
}


def _scales(ctx: Lowering, node, in_shape, out_shape) -> list[np.float32]:
    names = inputs(node)
    rank = len(in_shape)
    axes = [v % rank for v in attrs(node).get("axes", range(rank))]
    if len(names) > 2 and names[2] and np.asarray(ctx.value(names[2])).size:
        given = np.asarray(ctx.value(names[2]), np.float32).ravel()
        per_axis = dict(zip(axes, given, strict=True))
    else:
        if attrs(node).get("keep_aspect_ratio_policy", "stretch") != "stretch":
            raise ctx.fail("keep_aspect_ratio_policy other than 'stretch' is not supported")
        per_axis = {a: np.float32(out_shape[a]) / np.float32(in_shape[a]) for a in axes}
    return [np.float32(per_axis.get(i, 1.0)) for i in range(rank)]


@lowers("Resize")
def resize(ctx: Lowering, node) -> None:
    """RESIZE_BILINEAR when exact, else GATHER (nearest) or BATCH_MATMUL (linear, cubic)."""
    a = attrs(node)
    x_name = node.input[0]
    in_shape, out_shape = ctx.shape(x_name), ctx.shape(node.output[0])
    if len(in_shape) != 4 or in_shape[:2] != out_shape[:2]:
        raise ctx.fail(f"only H and W of a 4-D tensor can be resized ({in_shape} -> {out_shape})")
    if a.get("antialias", 0) and any(o < i for i, o in zip(in_shape, out_shape, strict=True)):
        raise ctx.fail("antialiased downscaling is not supported")
    mode = a.get("mode", "nearest")
    ctm = a.get("coordinate_transformation_mode", "half_pixel")
    scales = _scales(ctx, node, in_shape, out_shape)
    names = inputs(node)
    roi = np.asarray(ctx.value(names[1])).ravel() if len(names) > 1 and names[1] else None
    axes = [Axis(in_shape[i], out_shape[i], scales[i], _roi(roi, i, len(in_shape))) for i in (2, 3)]
    x = ctx.tensor(x_name, layout.NHWC)
    exact = all(np.float32(ax.n_out) / np.float32(ax.n_in) == ax.scale for ax in axes) and all(
        ax.n_out > 1 for ax in axes
    )
    if mode == "linear" and ctm in _BILINEAR and exact:
        align, half = _BILINEAR[ctm]
        out = ctx.output(node.output[0], layout.NHWC)
        size = ctx.const(np.asarray(out_shape[2:], np.int32))
        ctx.emit(
            "RESIZE_BILINEAR",
            [x, size],
            [out],
            "ResizeBilinearOptions",
            align_corners=align,
            half_pixel_centers=half,
        )
        return
    if ctm == "tf_crop_and_resize" and float(a.get("extrapolation_value", 0.0)) != 0.0:
        raise ctx.fail("tf_crop_and_resize with a non-zero extrapolation_value")
    for i, ax in enumerate(axes):
        matrix = interpolation_matrix(a.get, ax)
        x = _along(ctx, x, 1 + i, matrix, mode == "nearest")
    ctx.hold(node.output[0], x, layout.NHWC)


def _roi(roi, axis: int, rank: int) -> tuple[float, float]:
    if roi is None or not roi.size:
        return (0.0, 1.0)
    return (float(roi[axis]), float(roi[rank + axis]))


def _along(ctx: Lowering, x: int, axis: int, matrix: np.ndarray, nearest: bool) -> int:
    """Apply (n_out x n_in) ``matrix`` along stored axis 1 (H) or 2 (W) of NHWC ``x``."""
    shape = list(ctx.physical_shape(x))
    dtype = ctx.flat.tensors[x].dtype
    n_out = matrix.shape[0]
    if np.array_equal(matrix, np.eye(shape[axis])):
        return x
    out_shape = list(shape)
    out_shape[axis] = n_out
    if nearest:
        index = ctx.const(matrix.argmax(axis=1).astype(np.int32))
        return ctx.op("GATHER", [x, index], out_shape, dtype, "GatherOptions", axis=axis)
    lead = int(np.prod(shape[:axis]))
    rest = int(np.prod(shape[axis + 1 :]))
    view = ctx.reshape(x, [lead, shape[axis], rest])
    m = ctx.const(matrix.astype(dtype))
    y = ctx.op(
        "BATCH_MATMUL",
        [m, view],
        [lead, n_out, rest],
        dtype,
        "BatchMatMulOptions",
        adj_x=False,
        adj_y=False,
    )
    return ctx.reshape(y, out_shape)
