"""Constant folding: every node whose inputs are all constants is evaluated once (onnx.reference)
and replaced by an initializer; Shape and Size of statically shaped tensors fold too.

Nodes that would turn small inputs into a large constant (ConstantOfShape, Expand, Tile of a
scalar ...) stay, so the file does not grow; random ops and other domains are never folded.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from edgesal.graph.fold import remove_unused_initializers
from edgesal.graph.info import TensorInfo

NEVER_FOLDED = {
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
}
GROWTH_LIMIT = 1 << 16  # elements a folded constant may have beyond 4x its inputs


def constants_to_initializers(model: onnx.ModelProto) -> None:
    """Replace Constant nodes by initializers (in place)."""
    kept = []
    for node in model.graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            value = ReferenceEvaluator(node).run(None, {})[0]
            model.graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
        else:
            kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(kept)


def fold_constants(model: onnx.ModelProto) -> int:
    """Fold in place; returns the number of nodes removed."""
    constants_to_initializers(model)
    graph = model.graph
    known = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    info = TensorInfo(model)
    kept, folded = [], 0
    for node in graph.node:
        values = _fold(node, known, info)
        if values is None:
            kept.append(node)
            continue
        folded += 1
        for name, value in zip(node.output, values, strict=False):
            if name:
                known[name] = np.asarray(value)
    used = {i for n in kept for i in n.input} | {o.name for o in graph.output}
    initial = {t.name for t in graph.initializer}
    for name, value in known.items():
        if name in used and name not in initial:
            graph.initializer.append(numpy_helper.from_array(value, name))
    del graph.node[:]
    graph.node.extend(kept)
    remove_unused_initializers(model)
    return folded


def _fold(node: onnx.NodeProto, known: dict, info: TensorInfo) -> list[np.ndarray] | None:
    if node.domain not in ("", "ai.onnx") or node.op_type in NEVER_FOLDED:
        return None
    if node.op_type in ("Shape", "Size"):
        dims = info.dims(node.input[0])
        if dims is None or not all(isinstance(d, int) for d in dims):
            return None
        if node.op_type == "Size":
            return [np.asarray(int(np.prod(dims)), np.int64)]
        a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
        return [np.asarray(dims[a.get("start", 0) : a.get("end", len(dims))], np.int64)]
    names = [n for n in node.input if n]
    if not names or any(n not in known for n in names) or _has_graph(node):
        return None
    feeds = {n: known[n] for n in names}
    outputs = ReferenceEvaluator(node).run(None, feeds)
    size_in = sum(v.size for v in feeds.values())
    if any(np.asarray(o).size > max(4 * size_in, GROWTH_LIMIT) for o in outputs):
        return None
    return [np.asarray(o) for o in outputs]


def _has_graph(node: onnx.NodeProto) -> bool:
    graphs = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
    return any(a.type in graphs for a in node.attribute)
