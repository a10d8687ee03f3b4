"""A one-hot ArgMax row times a constant matrix is a row lookup.

An argmax target seeds the backward pass with ``OneHot(ArgMax(scores))``; its gradient through a
classifier's Gemm is that row times the weight matrix, a product that reads all K x N weights to
keep one row (1.5-4% of a zoo model's vanilla saliency time). ``Gather`` reads the
row alone and gives the same values: every other term of the product is ``0 * w``. ArgMax
indices always lie in range, so the lookup cannot fail where OneHot would give a zero row; other
index sources (the runtime ``target`` input) keep the product. The TFLite lowering makes the
same substitution on its own (``converters/tflite/ops/linear.py``).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgesal.graph.info import TensorInfo, attrs


def gather_one_hot_products(model: onnx.ModelProto) -> list[str]:
    """Replace each such Gemm by a Gather (in place); returns the replaced products' outputs,
    which now start the backward pass where the one-hot seed did. The one-hot rows are left
    for the caller's dead-node sweep (other readers may still come)."""
    graph = model.graph
    info = TensorInfo(model)
    constants = {t.name: t for t in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    nodes, starts = [], []
    for node in graph.node:
        lookup = _row_lookup(node, info, constants, producers)
        if lookup is None:
            nodes.append(node)
            continue
        nodes += _gather_nodes(node, *lookup, constants, graph)
        starts.append(node.output[0])
    if starts:
        del graph.node[:]
        graph.node.extend(nodes)
    return starts


def _row_lookup(node, info: TensorInfo, constants, producers) -> tuple[str, float, int] | None:
    """(ArgMax indices, alpha, transB) when ``node`` is Gemm(one-hot rows, constant B)."""
    if node.op_type != "Gemm" or (len(node.input) > 2 and node.input[2]):
        return None
    options = attrs(node)
    if options.get("transA", 0) or node.input[1] not in constants:
        return None
    indices = _argmax_one_hot(node.input[0], info, constants, producers)
    return (
        None
        if indices is None
        else (indices, float(options.get("alpha", 1.0)), options.get("transB", 0))
    )


def _argmax_one_hot(name: str, info: TensorInfo, constants, producers) -> str | None:
    """The indices when ``name`` is [m, K] OneHot(ArgMax(..), K, [0, 1]) on its last axis
    (through Reshape/Identity keeping that shape), else None."""
    if not info.has(name) or len(info.shape(name)) != 2:
        return None
    shape = info.shape(name)
    node = producers.get(name)
    while node is not None and node.op_type in ("Reshape", "Identity"):
        if not info.has(node.input[0]) or info.shape(node.input[0]) != shape:
            return None
        node = producers.get(node.input[0])
    if node is None or node.op_type != "OneHot" or not all(n in constants for n in node.input[1:]):
        return None
    axis = attrs(node).get("axis", -1)
    depth = numpy_helper.to_array(constants[node.input[1]]).ravel()
    values = numpy_helper.to_array(constants[node.input[2]]).ravel()
    if axis not in (-1, 1) or list(depth) != [shape[1]] or list(values) != [0, 1]:
        return None
    indices = node.input[0]
    source = producers.get(indices)
    if source is None or source.op_type != "ArgMax" or info.shape(indices) != shape[:1]:
        return None
    scored = info.shape(source.input[0])
    arg = attrs(source)
    axis = arg.get("axis", 0) % len(scored)
    return indices if scored[axis] == shape[1] and arg.get("keepdims", 1) == 0 else None


def _gather_nodes(node, indices: str, alpha: float, trans_b: int, constants, graph) -> list:
    """Rows ``indices`` of B' (B, or B^T read by a column Gather and a transpose), times alpha."""
    base = node.name or node.output[0]
    out = node.output[0]
    rows = f"{base}/rows" if alpha != 1.0 or trans_b else out
    nodes = [
        helper.make_node(
            "Gather", [node.input[1], indices], [rows], name=f"{base}/Gather", axis=trans_b
        )
    ]
    if trans_b:
        picked, rows = rows, f"{base}/rows_t" if alpha != 1.0 else out
        nodes.append(
            helper.make_node("Transpose", [picked], [rows], name=f"{base}/Transpose", perm=[1, 0])
        )
    if alpha != 1.0:
        dtype = numpy_helper.to_array(constants[node.input[1]]).dtype
        scale = f"{base}/alpha"
        graph.initializer.append(numpy_helper.from_array(np.asarray(alpha, dtype), scale))
        nodes.append(helper.make_node("Mul", [rows, scale], [out], name=f"{base}/Mul"))
    return nodes
