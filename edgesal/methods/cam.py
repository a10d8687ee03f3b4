"""Grad-CAM (Selvaraju et al. 2017) and Grad-CAM++ (Chattopadhay et al. 2018).

The backward pass stops at a spatial feature map, so only the head is differentiated; channel
weights come from the gradients, the weighted map is rectified and bilinearly upsampled to the
input grid inside the graph.
"""

from __future__ import annotations

import numpy as np
import onnx

from edgesal.errors import InputError
from edgesal.methods.base import MethodContext, method

_NCHW_PRODUCERS = {
    "Conv", "ConvTranspose", "MaxPool", "AveragePool", "BatchNormalization",
    "InstanceNormalization", "Resize", "DepthToSpace", "SpaceToDepth",
}  # fmt: skip
_TO_NHWC, _TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]


def feature_layouts(graph: onnx.GraphProto, image: str, layout: str) -> dict[str, str]:
    """Layout of each rank-4 tensor downstream of the image, propagated op by op."""
    layouts = {image: layout}
    for node in graph.node:
        known = [layouts[i] for i in node.input if i in layouts]
        if not known:
            continue
        result: str | None
        if node.op_type in _NCHW_PRODUCERS:
            result = "NCHW"
        elif node.op_type == "Transpose":
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
            result = {
                ("NCHW", tuple(_TO_NHWC)): "NHWC",
                ("NHWC", tuple(_TO_NCHW)): "NCHW",
            }.get((known[0], tuple(perm or ())))
        else:
            result = known[0]
        if result:
            for out in node.output:
                layouts[out] = result
    return layouts


def find_layer(ctx: MethodContext) -> tuple[str, str]:
    """(tensor, layout) of ``--layer`` or, by default, the last spatial map feeding the target."""
    graph = ctx.model.graph
    layouts = feature_layouts(graph, ctx.image.tensor, ctx.image.layout)
    wanted = ctx.options.layer
    if wanted is not None:
        tensor = _resolve_layer(graph, wanted)
        if tensor not in layouts or len(ctx.info.dims(tensor) or ()) != 4:
            raise InputError(
                f"--layer {wanted}: '{tensor}' is not a 4-D feature map computed from the image "
                f"(shape {list(ctx.info.dims(tensor) or [])})"
            )
        if max(_spatial(ctx.shape(tensor), layouts[tensor])) <= 1:
            raise InputError(
                f"--layer {wanted}: '{tensor}' is not spatial (shape "
                f"{list(ctx.shape(tensor))}: one position), so its map would be uniform; name a "
                "feature map before the global pooling"
            )
        return tensor, layouts[tensor]
    feeding = _feeding(graph, set(ctx.seeds))
    best = None
    for node in graph.node:
        for out in node.output:
            if out in layouts and out in feeding and len(ctx.info.dims(out) or ()) == 4:
                if min(_spatial(ctx.shape(out), layouts[out])) > 1:
                    best = out
    if best is None:
        raise InputError("no spatial feature map feeds the target; name one with --layer")
    return best, layouts[best]


def _resolve_layer(graph: onnx.GraphProto, wanted: str) -> str:
    for node in graph.node:
        if wanted in node.output:
            return wanted
    for node in graph.node:
        if node.name == wanted and len(node.output) == 1:
            return node.output[0]
    raise InputError(f"--layer {wanted}: no tensor or single-output node has that name")


def _feeding(graph: onnx.GraphProto, targets: set[str]) -> set[str]:
    needed = set(targets)
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            needed.update(node.input)
    return needed


def _spatial(shape: tuple[int, ...], layout: str) -> tuple[int, int]:
    return (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])


def _cam(ctx: MethodContext, x: str, copies: int, plus: bool) -> str:
    b = ctx.b
    layer, layout = find_layer(ctx)
    activation, grad = ctx.layer_gradient(layer, x, copies)
    spatial_axes, channel_axis = ([2, 3], 1) if layout == "NCHW" else ([1, 2], 3)
    weights = (
        _plus_weights(ctx, activation, grad, spatial_axes)
        if plus
        else _spatial_mean(ctx, grad, spatial_axes)
    )
    cam = b.Relu(b.reduce("ReduceSum", b.Mul(weights, activation), [channel_axis], keepdims=1))
    if layout == "NHWC":
        cam = b.Transpose(cam, perm=_TO_NCHW)
    return _upsample(ctx, cam, x)


def _spatial_mean(ctx: MethodContext, grad: str, axes: list[int]) -> str:
    """mean over ``axes`` of ``grad``. When the layer feeds a global average pool its gradient is
    one value per channel broadcast over space (an Expand): that value is the mean, read without
    materialising the broadcast and averaging it back."""
    node = next((n for n in reversed(ctx.b.graph.node) if grad in n.output), None)
    if node is not None and node.op_type == "Expand":
        source, shape = ctx.shape(node.input[0]), ctx.shape(grad)
        keeps = [1 if i in axes else d for i, d in enumerate(shape)]
        if list(source) == keeps:
            return node.input[0]
    return ctx.b.reduce("ReduceMean", grad, axes, keepdims=1)


def _plus_weights(ctx: MethodContext, activation: str, grad: str, axes: list[int]) -> str:
    """w_c = sum_ij relu(g) * g^2 / (2 g^2 + sum_ab(A) g^3), zero where g == 0."""
    b = ctx.b
    dtype = ctx.dtype(grad)
    g2 = b.Mul(grad, grad)
    g3 = b.Mul(g2, grad)
    total = b.reduce("ReduceSum", activation, axes, keepdims=1)
    denom = b.Add(b.Mul(b.const(np.asarray(2.0, dtype)), g2), b.Mul(total, g3))
    zero = b.const(np.asarray(0.0, dtype))
    safe = b.Where(b.Equal(denom, zero), b.const(np.asarray(1.0, dtype)), denom)
    alpha = b.Where(b.Equal(grad, zero), zero, b.Div(g2, safe))
    return b.reduce("ReduceSum", b.Mul(alpha, b.Relu(grad)), axes, keepdims=1)


def _upsample(ctx: MethodContext, cam: str, x: str) -> str:
    """[M,1,h,w] -> input-shaped single-channel map (bilinear, half-pixel like F.interpolate)."""
    b = ctx.b
    shape = ctx.shape(x)
    layout = ctx.image.layout
    height, width = (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])
    sizes = b.ints([shape[0], 1, height, width])
    up = b.Resize(cam, "", "", sizes, mode="linear", coordinate_transformation_mode="half_pixel")
    return up if layout == "NCHW" else b.Transpose(up, perm=_TO_NHWC)


@method("gradcam", "Grad-CAM (Selvaraju et al. 2017)")
def gradcam(ctx: MethodContext, x: str, copies: int) -> str:
    """L = relu(sum_c mean_ij(dS/dA_c) A_c), upsampled to the input grid."""
    return _cam(ctx, x, copies, plus=False)


@method("gradcampp", "Grad-CAM++ (Chattopadhay et al. 2018)")
def gradcampp(ctx: MethodContext, x: str, copies: int) -> str:
    """L = relu(sum_c w_c A_c) with Grad-CAM++'s positive-gradient weights w_c."""
    return _cam(ctx, x, copies, plus=True)
