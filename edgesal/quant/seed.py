"""Rescaling the backward seed: gradient tensors centred on magnitude 1, undone at the output.

Gradients of a score can sit many orders of magnitude below the activations (1e-6 and less for
deep or saturated networks). Per-tensor affine int8 keeps the *relative* resolution whatever the
magnitude, but absolute magnitudes still matter around it: quantization scales of 1e-9 are
below what some delegates and float16 paths represent, subnormal floats are slow or flushed to
zero in float kernels, and the map's normalization adds an absolute epsilon. The seed is
multiplied by k = 2^n so that the median calibrated |max| of the gradient tensors is about 1.
A power of two is exact in floating point: the float map is unchanged bit for bit.

Every method except Grad-CAM++ is positively homogeneous in the seed (degree 2 for
SmoothGrad-squared), so the map scales by k^degree. With per-image normalization (``max``,
``percentile``) the factor cancels; otherwise a Mul by k^-degree is inserted before the output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgesal import metadata
from edgesal.quant.graph import SaliencyGraph

_NOT_HOMOGENEOUS = {"gradcampp": "Grad-CAM++ weights are ratios of gradient powers"}
_SCALE_FREE_NORMALIZATIONS = ("max", "percentile")


@dataclass(frozen=True)
class SeedScale:
    """The factor applied to the seed and how the map gets it back out."""

    factor: float
    degree: int
    undo: str  # "normalization" | "output multiply" | "none"
    reason: str


def choose(graph: SaliencyGraph, magnitudes: dict[str, float], meta: dict) -> SeedScale:
    """k = 2^-round(log2(median |max|)) over the gradient tensors' calibrated magnitudes."""
    if graph.method in _NOT_HOMOGENEOUS:
        return SeedScale(1.0, 1, "none", f"not rescaled: {_NOT_HOMOGENEOUS[graph.method]}")
    logs = [math.log2(v) for n, v in magnitudes.items() if n in graph.backward and v > 0]
    if not logs:
        return SeedScale(1.0, 1, "none", "not rescaled: no non-zero gradient tensor")
    exponent = -round(float(np.median(logs)))
    params = meta.get("params") if isinstance(meta.get("params"), dict) else {}
    degree = 2 if params.get("squared") else 1
    post = meta.get("postprocess") if isinstance(meta.get("postprocess"), dict) else {}
    undo = (
        "normalization"
        if post.get("normalize") in _SCALE_FREE_NORMALIZATIONS
        else "output multiply"
    )
    return SeedScale(
        2.0**exponent,
        degree,
        undo if exponent else "none",
        f"median gradient magnitude 2^{-exponent} brought to about 1",
    )


def apply(model: onnx.ModelProto, graph: SaliencyGraph, scale: SeedScale) -> None:
    """Multiply every seed by ``scale.factor`` and undo it at the output (in place)."""
    if scale.factor == 1.0:
        return
    for seed in graph.seeds:
        _scale_seed(model, seed, scale.factor)
    if scale.undo == "output multiply":
        _scale_output(model, graph.saliency, scale.factor ** (-scale.degree))
    metadata.write(model, {"quant.seed_scale": scale.factor})


def _scale_seed(model: onnx.ModelProto, seed: str, factor: float) -> None:
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    if seed in initializers:
        _scale_initializer(initializers[seed], factor)
        return
    producer = next(n for n in graph.node if seed in n.output)
    if producer.op_type == "OneHot" and producer.input[2] in initializers:
        values = initializers[producer.input[2]]
        readers = [n for n in graph.node if values.name in n.input]
        if len(readers) == 1:
            _scale_initializer(values, factor)
            return
    _multiply_tensor(model, seed, factor)


def _scale_initializer(tensor: onnx.TensorProto, factor: float) -> None:
    array = numpy_helper.to_array(tensor)
    tensor.CopyFrom(numpy_helper.from_array((array * factor).astype(array.dtype), tensor.name))


def _multiply_tensor(model: onnx.ModelProto, tensor: str, factor: float) -> None:
    """Readers of ``tensor`` read ``tensor * factor`` instead."""
    scaled = f"{tensor}/seed_scaled"
    const = f"{tensor}/seed_scale"
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name == tensor:
                node.input[i] = scaled
    model.graph.initializer.append(numpy_helper.from_array(np.float32(factor), const))
    index = next(i for i, n in enumerate(model.graph.node) if tensor in n.output) + 1
    model.graph.node.insert(
        index, helper.make_node("Mul", [tensor, const], [scaled], name=f"{tensor}/seed_scale")
    )


def _scale_output(model: onnx.ModelProto, output: str, factor: float) -> None:
    """The graph output ``output`` becomes ``factor`` times what it was."""
    producer = next(n for n in model.graph.node if output in n.output)
    inner = f"{output}/unscaled"
    producer.output[list(producer.output).index(output)] = inner
    const = f"{output}/seed_unscale"
    model.graph.initializer.append(numpy_helper.from_array(np.float32(factor), const))
    model.graph.node.append(
        helper.make_node("Mul", [inner, const], [output], name=f"{output}/seed_unscale")
    )
