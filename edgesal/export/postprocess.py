"""Turn a raw, input-shaped attribution into the ``saliency`` map, inside the graph.

Channel reduction (``absmax`` | ``abssum`` | ``l2`` | ``none``) over the input's channel axis
gives [N, H, W] on an image's grid whatever the layout; an input without a channel axis (audio
[N,T,F], tabular [N,F] unless ``--channel-axis`` names one) keeps its shape and takes |x|; ``none``
keeps the raw input-shaped tensor. Normalization (``max`` | ``percentile`` | ``none``) scales each
sample's map to [0, 1] (signed maps: to [-1, 1]), whatever its rank.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper

from edgesal.errors import InputError
from edgesal.graph.builder import Builder
from edgesal.options import NORMALIZATIONS, REDUCTIONS

PERCENTILE = 99.0
_EPS = 1e-12


def reduce_channels(
    b: Builder, attribution: str, shape: tuple[int, ...], axis: int | None, how: str
) -> tuple[str, tuple[int, ...], bool]:
    """Drop channel ``axis`` by ``how`` ([N,C,H,W] -> [N,H,W]); with no channel axis the map is
    |attribution| in the input's shape. Returns (name, shape, signed)."""
    if how not in REDUCTIONS:
        raise InputError(f"--reduce {how!r}: choose one of {', '.join(REDUCTIONS)}")
    if how == "none":
        return attribution, shape, True
    if axis is None:
        return b.Abs(attribution), shape, False
    spatial = tuple(d for i, d in enumerate(shape) if i != axis)
    if shape[axis] == 1:  # one channel (Grad-CAM maps, grey inputs): every reduction is |x|
        return b.Reshape(b.Abs(attribution), b.ints(spatial)), spatial, False
    if how == "absmax":
        reduced = b.reduce("ReduceMax", b.Abs(attribution), [axis], keepdims=0)
    else:
        reduced = b.reduce("ReduceL1" if how == "abssum" else "ReduceL2", attribution, [axis], 0)
    return reduced, spatial, False


def normalize(
    b: Builder, saliency: str, shape: tuple[int, ...], how: str, signed: bool, dtype=np.float32
) -> str:
    """Scale each sample's map by its maximum (or 99th percentile, clipped) of |map|."""
    if how not in NORMALIZATIONS:
        raise InputError(f"--normalize {how!r}: choose one of {', '.join(NORMALIZATIONS)}")
    if how == "none":
        return saliency
    batch, per_item = shape[0], math.prod(shape[1:])
    magnitude = b.Abs(saliency) if signed else saliency
    flat = b.Reshape(magnitude, b.ints([batch, per_item]))
    if how == "max":
        scale = b.reduce("ReduceMax", flat, [1], keepdims=1)
    else:
        k = max(1, math.ceil(per_item * (100.0 - PERCENTILE) / 100.0))
        top = b.TopK(flat, b.ints([k]), axis=1, outputs=2)[0]
        scale = b.Slice(top, b.ints([k - 1]), b.ints([k]), b.ints([1]))
    scale = b.Add(scale, b.const(np.float32(_EPS), dtype=dtype))
    scale = b.Reshape(scale, b.ints([batch] + [1] * (len(shape) - 1)))
    scaled = b.Div(saliency, scale)
    if how == "percentile":
        low = b.const(-1.0 if signed else 0.0, dtype=dtype)
        scaled = b.Clip(scaled, low, b.const(1.0, dtype=dtype))
    return scaled


def add_output(
    model: onnx.ModelProto, tensor: str, name: str, shape: tuple[int, ...], elem_type: int
) -> None:
    """Expose ``tensor`` as graph output ``name`` (an Identity named after it, declared shape)."""
    model.graph.node.append(helper.make_node("Identity", [tensor], [name], name=f"edgesal/{name}"))
    model.graph.output.append(helper.make_tensor_value_info(name, elem_type, list(shape)))
