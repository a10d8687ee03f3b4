"""Graph surgery the evaluation needs: prune a saliency model back to its forward pass.

Export only appends nodes, so the original network is intact inside every saliency model; pruning
to the original outputs recovers it (for sanity checks, which randomize and re-export it) and a
prediction-only copy with a free batch axis (for the batched forward passes of deletion curves).
"""

from __future__ import annotations

import copy

import onnx
from onnx import helper

from edgesal.errors import ModelLoadError


def _subgraph_inputs(node: onnx.NodeProto) -> set[str]:
    """Outer-scope names that the subgraphs of ``node`` (If, Loop, Scan) read."""
    names: set[str] = set()
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for graph in graphs:
            for inner in graph.node:
                names.update(inner.input)
                names |= _subgraph_inputs(inner)
    return names


def prune(model: onnx.ModelProto, outputs: list[str]) -> onnx.ModelProto:
    """A copy of ``model`` that computes only ``outputs``: unused nodes, inputs, initializers
    and value_info are dropped; metadata and opsets are kept."""
    graph = model.graph
    known = {o.name: o for o in graph.output}
    missing = [name for name in outputs if name not in known]
    if missing:
        raise ModelLoadError(f"the model has no outputs named {missing}")
    needed, kept = set(outputs), []
    for node in reversed(graph.node):
        if needed.intersection(node.output):
            kept.append(node)
            needed.update(name for name in node.input if name)
            needed |= _subgraph_inputs(node)
    pruned = helper.make_graph(
        [copy.deepcopy(n) for n in reversed(kept)],
        graph.name,
        [copy.deepcopy(i) for i in graph.input if i.name in needed],
        [copy.deepcopy(known[name]) for name in outputs],
        [copy.deepcopy(t) for t in graph.initializer if t.name in needed],
        value_info=[copy.deepcopy(v) for v in graph.value_info if v.name in needed],
    )
    result = helper.make_model(pruned, opset_imports=list(model.opset_import))
    result.ir_version = model.ir_version
    result.metadata_props.extend(copy.deepcopy(p) for p in model.metadata_props)
    return result


def with_free_batch(model: onnx.ModelProto, input_name: str) -> onnx.ModelProto:
    """``model`` (modified in place and returned) with a symbolic batch axis ``N`` on the image
    input and on every output; inferred shapes are dropped. Whether the graph really accepts
    another batch size is for the caller to find out (a Reshape may have it baked in)."""
    for value in [*model.graph.input, *model.graph.output]:
        if value.name == input_name or value in model.graph.output:
            dims = value.type.tensor_type.shape.dim
            if dims:
                dims[0].Clear()
                dims[0].dim_param = "N"
    del model.graph.value_info[:]
    return model
