"""Resize: nearest, linear and cubic, every coordinate_transformation_mode of opsets 13-21.

Resize is linear in x and separable: along each axis y = M x with a constant (out x in)
interpolation matrix, so dx = M^T dy axis by axis, as MatMuls with constants built here in numpy
from the attributes and the static shapes (TFLite: BATCH_MATMUL / FULLY_CONNECTED). The hot case,
nearest upsampling of H and W by integer factors, is a block sum instead (AveragePool * f^2).

Source coordinates are computed in float32 with the ONNX formulas, as onnxruntime does, so the
nearest-neighbour choices agree with it at exact .5 boundaries. Antialiased downscaling is
refused with an error naming the node.
"""

from __future__ import annotations

import math

import numpy as np

from edgesal.autodiff.registry import GradContext, register
from edgesal.errors import UnsupportedAttributeError
from edgesal.graph.idioms.interpolation import Axis, interpolation_matrix

_COORDINATE_MODES = {
    "half_pixel",
    "half_pixel_symmetric",
    "pytorch_half_pixel",
    "align_corners",
    "asymmetric",
    "tf_crop_and_resize",
}
_NEAREST_MODES = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"}


def resize_axes(ctx: GradContext) -> list[Axis]:
    """Per-axis lengths, scales and roi, resolving scales/sizes/axes/keep_aspect_ratio_policy."""
    scales = _float_input(ctx, 2, "scales")
    cropping = ctx.attr("coordinate_transformation_mode") == "tf_crop_and_resize"
    roi = _float_input(ctx, 1, "roi") if cropping else None
    in_shape = ctx.shape(ctx.x[0])
    out_shape = list(ctx.shape(ctx.y[0]))
    rank = len(in_shape)
    axes = [a % rank for a in ctx.attr("axes", range(rank))]
    if scales is not None and scales.size:
        per_axis = dict(zip(axes, scales.astype(np.float32), strict=True))
    else:
        per_axis = _scales_from_sizes(ctx, in_shape, out_shape, axes)
    result = []
    for axis, n in enumerate(in_shape):
        scale = per_axis.get(axis, np.float32(1.0))
        bounds = (0.0, 1.0)
        if roi is not None and roi.size and axis in axes:
            k = axes.index(axis)
            bounds = (float(roi[k]), float(roi[len(axes) + k]))
        result.append(Axis(n, out_shape[axis], np.float32(scale), bounds))
    return result


def _scales_from_sizes(ctx, in_shape, out_shape, axes) -> dict[int, np.float32]:
    given = ctx.value(ctx.x[3]) if len(ctx.x) > 3 and ctx.x[3] else None
    sizes = None if given is None else [int(v) for v in np.asarray(given).ravel()]
    policy = ctx.attr("keep_aspect_ratio_policy", "stretch")
    if sizes is None:
        if policy != "stretch":
            raise UnsupportedAttributeError(
                ctx, f"keep_aspect_ratio_policy='{policy}' needs a constant sizes input"
            )
        sizes = [out_shape[a] for a in axes]
    ratios = {a: np.float32(s) / np.float32(in_shape[a]) for a, s in zip(axes, sizes, strict=True)}
    if policy == "not_larger":
        return dict.fromkeys(axes, min(ratios.values()))
    if policy == "not_smaller":
        return dict.fromkeys(axes, max(ratios.values()))
    return ratios


def _float_input(ctx: GradContext, index: int, what: str) -> np.ndarray | None:
    if index >= len(ctx.x) or not ctx.x[index]:
        return None
    value = ctx.value(ctx.x[index])
    if value is None:
        raise UnsupportedAttributeError(ctx, f"its {what} input '{ctx.x[index]}' is not a constant")
    return np.asarray(value).ravel()


def check_supported(ctx: GradContext, axes: list[Axis]) -> None:
    """Refuse what the matrices here do not model, naming the attribute."""
    mode = ctx.attr("mode", "nearest")
    ctm = ctx.attr("coordinate_transformation_mode", "half_pixel")
    if mode not in ("nearest", "linear", "cubic"):
        raise UnsupportedAttributeError(ctx, f"mode='{mode}' is not supported")
    if ctm not in _COORDINATE_MODES:
        raise UnsupportedAttributeError(
            ctx, f"coordinate_transformation_mode='{ctm}' is not supported"
        )
    rounding = ctx.attr("nearest_mode", "round_prefer_floor")
    if mode == "nearest" and rounding not in _NEAREST_MODES:
        raise UnsupportedAttributeError(ctx, f"nearest_mode='{rounding}' is not supported")
    if ctx.attr("antialias", 0) and mode != "nearest" and any(a.scale < 1 for a in axes):
        raise UnsupportedAttributeError(
            ctx, "antialias=1 with downscaling is not supported (its filter widens with 1/scale)"
        )


@register("Resize")
def resize(ctx: GradContext) -> list[str | None]:
    """dx = M_1^T ... M_k^T dy: one constant matrix per resized axis.

    Nearest upsampling of H and W by integer factors (every output copies input i // f) has a
    block-sum transpose: one AveragePool times f_h * f_w, much cheaper than the MatMuls.
    """
    axes = resize_axes(ctx)
    check_supported(ctx, axes)
    matrices = {}
    for i, axis in enumerate(axes):
        m = interpolation_matrix(ctx.attr, axis)
        if m.shape[0] != m.shape[1] or not np.array_equal(m, np.eye(len(m))):
            matrices[i] = m.astype(ctx.dtype(ctx.x[0]))
    factors = {i: block_factor(m) for i, m in matrices.items()}
    if len(axes) == 4 and set(matrices) <= {2, 3} and all(factors.values()):
        f = [factors.get(2) or 1, factors.get(3) or 1]  # each present one is set (all())
        pooled = ctx.b.AveragePool(ctx.dy0, kernel_shape=f, strides=f)
        return [ctx.b.Mul(pooled, ctx.scalar(float(f[0] * f[1]), ctx.x[0]))]
    shape = [a.n_out for a in axes]
    grad = ctx.dy0
    for i in sorted(matrices, reverse=True):
        grad = transposed_along(ctx, grad, shape, i, matrices[i])
        shape[i] = axes[i].n_in
    return [grad]


def block_factor(m: np.ndarray) -> int | None:
    """f when M copies input i // f to output i (nearest upsampling by an integer f), else None."""
    n_out, n_in = m.shape
    f = n_out // n_in
    blocks = np.repeat(np.eye(n_in, dtype=m.dtype), f, axis=0)
    return f if f * n_in == n_out and np.array_equal(m, blocks) else None


def transposed_along(ctx: GradContext, grad: str, shape: list[int], axis: int, m) -> str:
    """M^T applied along ``axis`` of ``grad`` (shaped ``shape``, n_out along ``axis``)."""
    b = ctx.b
    n_out, n_in = m.shape
    rank = len(shape)
    if axis == rank - 1:
        return b.MatMul(grad, b.const(m, hint="resize_matrix"))
    m_t = b.const(np.ascontiguousarray(m.T), hint="resize_matrix_t")
    if axis == rank - 2:
        return b.MatMul(m_t, grad)
    view = [math.prod(shape[:axis]), n_out, math.prod(shape[axis + 1 :])]
    moved = b.MatMul(m_t, b.Reshape(grad, b.ints(view)))
    return b.Reshape(moved, b.ints(shape[:axis] + [n_in] + shape[axis + 1 :]))
