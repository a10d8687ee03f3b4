"""Constant folding before differentiation.

Exporters (torch.onnx, tf2onnx) compute pads, shapes and slice bounds with small subgraphs. Rules
need those as constants, so every node whose inputs are all constant (including Shape/Size of a
tensor whose shape is static) is evaluated once with ONNX's reference evaluator and replaced by an
initializer.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from edgesal.graph.info import TensorInfo, is_static

_NOT_FOLDED = {
    "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
    "Bernoulli", "If", "Loop", "Scan",
}  # fmt: skip
_MAX_GROWTH = 1 << 22  # elements: larger results (Expand/Tile of constants) stay as nodes


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with constant subgraphs replaced by initializers (in place; returned)."""
    graph = model.graph
    info = TensorInfo(model)
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    kept, new_inits = [], []
    for node in graph.node:
        results = _evaluate(node, values, info, opset) if _foldable(node, outputs) else None
        if results is None:
            kept.append(node)
            continue
        for name, value in zip(node.output, results, strict=True):
            values[name] = value
            new_inits.append(numpy_helper.from_array(np.asarray(value), name))
    if new_inits:
        del graph.node[:]
        graph.node.extend(kept)
        graph.initializer.extend(new_inits)
        remove_unused_initializers(model)
    return model


def _foldable(node: onnx.NodeProto, graph_outputs: set[str]) -> bool:
    return (
        node.domain in ("", "ai.onnx")
        and node.op_type not in _NOT_FOLDED
        and not any(out in graph_outputs for out in node.output)
        and not any(
            a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
            for a in node.attribute
        )
    )


def _evaluate(node, values, info: TensorInfo, opset: int) -> list[np.ndarray] | None:
    if node.op_type in ("Shape", "Size"):
        return _static_shape_op(node, info)
    inputs = [name for name in node.input if name]
    if not all(name in values for name in inputs) or _too_large(node, values, info):
        return None
    try:
        graph = helper.make_graph(
            [node],
            "fold",
            [],
            [
                helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None)
                for o in node.output
            ],
            [numpy_helper.from_array(np.asarray(values[n]), n) for n in dict.fromkeys(inputs)],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        results = ReferenceEvaluator(model).run(None, {})
    except Exception:  # an op the reference evaluator lacks: leave the node in place
        return None
    if any(np.asarray(r).size > _MAX_GROWTH for r in results):
        return None
    return [np.asarray(r) for r in results]


def _too_large(node, values, info: TensorInfo) -> bool:
    """Whether an output would exceed ``_MAX_GROWTH`` elements, judged before evaluating: from
    shape inference, and for the ops whose output size an input's values set (a model's
    ConstantOfShape of [20000, 20000] made the export allocate 1.6 GB) from those values."""
    for out in node.output:
        dims = info.dims(out)
        if dims is not None and is_static(dims) and _elements(dims) > _MAX_GROWTH:
            return True
    given = [np.asarray(values[n]) for n in node.input if n]
    try:
        if node.op_type == "ConstantOfShape":
            return _elements(given[0].ravel()) > _MAX_GROWTH
        if node.op_type == "Expand":
            return _elements(np.broadcast_shapes(given[0].shape, tuple(given[1].ravel()))) > (
                _MAX_GROWTH
            )
        if node.op_type == "Tile":
            return given[0].size * _elements(given[1].ravel()) > _MAX_GROWTH
        if node.op_type == "Range":
            start, limit, delta = (float(v) for v in given[:3])
            return delta == 0 or abs(limit - start) / abs(delta) > _MAX_GROWTH
    except (ValueError, TypeError, IndexError, OverflowError):
        return True  # malformed: leave the node for the checker and the runtime to refuse
    return False


def _elements(dims) -> int:
    return int(np.prod([abs(int(d)) for d in dims], dtype=object)) if len(dims) else 1


def _static_shape_op(node: onnx.NodeProto, info: TensorInfo) -> list[np.ndarray] | None:
    dims = info.dims(node.input[0])
    if dims is None or not is_static(dims):
        return None
    if node.op_type == "Size":
        return [np.asarray(int(np.prod(dims)), dtype=np.int64)]
    start = next((a.i for a in node.attribute if a.name == "start"), 0)
    end = next((a.i for a in node.attribute if a.name == "end"), None)
    return [np.asarray(dims[start:end], dtype=np.int64)]


def remove_unused_initializers(model: onnx.ModelProto) -> None:
    """Drop initializers no node or output reads (and their entries among the graph inputs)."""
    graph = model.graph
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    dropped = {t.name for t in graph.initializer if t.name not in used}
    kept = [t for t in graph.initializer if t.name not in dropped]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    inputs = [i for i in graph.input if i.name not in dropped]
    del graph.input[:]
    graph.input.extend(inputs)


def drop_dead_nodes(graph: onnx.GraphProto, prefix: str) -> None:
    """Remove the nodes named ``prefix...`` whose outputs nothing reads, until none is left (what
    rewrites of appended nodes leave behind); the model's own nodes stay as they are."""
    outputs = {o.name for o in graph.output}
    while True:
        used = {name for node in graph.node for name in node.input} | outputs
        dead = [
            i
            for i, node in enumerate(graph.node)
            if node.name.startswith(prefix) and not any(o in used for o in node.output)
        ]
        if not dead:
            return
        for i in reversed(dead):
            del graph.node[i]
