"""1-D windowed operators (Conv1d on audio features or sensor series) as 2-D ones for TFLite.

TFLite has only 2-D convolutions and pools. A node over [N, C, L] becomes the same node over
[N, C, 1, L]: the input (and a Conv's weight [O, I, k]) gains a unit axis 2, every per-axis
attribute gains a leading neutral entry (kernel 1, stride 1, dilation 1, pads 0), and the result
loses the axis again. The forward and the gradient graph (ConvTranspose, flipped-kernel Conv,
pools) are lifted alike, before the lowering sees them.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

_WINDOWED = ("Conv", "ConvTranspose", "MaxPool", "AveragePool")
_PER_AXIS = {"kernel_shape": 1, "strides": 1, "dilations": 1, "output_padding": 0}


def lift_1d(model: onnx.ModelProto) -> int:
    """Rewrite every 1-D Conv/ConvTranspose/MaxPool/AveragePool of ``model`` in place as its 2-D
    form between Unsqueeze and Squeeze; returns how many nodes were lifted."""
    graph = model.graph
    axis = f"{graph.name or 'graph'}/lift1d/axis2"
    nodes, lifted = [], 0
    for node in graph.node:
        if not _is_1d(node, graph):
            nodes.append(node)
            continue
        lifted += 1
        nodes.extend(_lifted(node, axis))
    if lifted:
        graph.initializer.append(numpy_helper.from_array(np.array([2], np.int64), axis))
        del graph.node[:]
        graph.node.extend(nodes)
    return lifted


def _is_1d(node: onnx.NodeProto, graph: onnx.GraphProto) -> bool:
    if node.op_type not in _WINDOWED or len(node.output) != 1:
        return False
    kernel = next((a.ints for a in node.attribute if a.name == "kernel_shape"), None)
    if kernel is not None:
        return len(kernel) == 1
    weights = next((t for t in graph.initializer if t.name == node.input[1]), None)
    return weights is not None and len(weights.dims) == 3


def _lifted(node: onnx.NodeProto, axis: str) -> list[onnx.NodeProto]:
    prefix = f"{node.name or node.output[0]}/lift1d"
    inputs = [f"{prefix}/x", *(f"{prefix}/w" for _ in node.input[1:2])]
    out = [helper.make_node("Unsqueeze", [node.input[0], axis], [inputs[0]])]
    if node.op_type in ("Conv", "ConvTranspose"):
        out.append(helper.make_node("Unsqueeze", [node.input[1], axis], [inputs[1]]))
        inputs += list(node.input[2:])
    lifted = helper.make_node(
        node.op_type, inputs, [f"{prefix}/y"], name=node.name, domain=node.domain
    )
    for attribute in node.attribute:
        lifted.attribute.append(_lifted_attribute(attribute))
    out.append(lifted)
    out.append(helper.make_node("Squeeze", [f"{prefix}/y", axis], [node.output[0]]))
    return out


def _lifted_attribute(attribute: onnx.AttributeProto) -> onnx.AttributeProto:
    if attribute.name in _PER_AXIS:
        return helper.make_attribute(attribute.name, [_PER_AXIS[attribute.name], *attribute.ints])
    if attribute.name == "pads":  # [begin, end] -> [0, begin, 0, end]
        return helper.make_attribute("pads", [0, attribute.ints[0], 0, attribute.ints[1]])
    if attribute.name == "output_shape":
        return helper.make_attribute("output_shape", [1, *attribute.ints])
    return attribute
