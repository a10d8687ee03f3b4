"""A float model that behaves like any mix of the int8 model and the float model, per node.

Built once from the all-int8 QDQ model: every DequantizeLinear output ``td`` is replaced by
``t + f * (td - t)``, where ``t`` is the float tensor it quantizes and ``f`` a scalar input. With
``f = 1`` the tensor is quantized, with ``f = 0`` it is the float value. A tensor is quantized
when any node next to it is (its producer or a consumer), as onnxruntime's QDQ quantizer decides,
so one session evaluates every candidate set of float nodes without re-quantizing the model.
The convolutions themselves run in float on dequantized values, which equals the int8 kernels'
integer arithmetic up to float rounding.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from edgesal.quant.qdq import quantized_nodes

_QDQ = ("QuantizeLinear", "DequantizeLinear")


class Simulator:
    """Runs the model with an arbitrary subset of its quantized nodes in int8."""

    def __init__(self, qdq: onnx.ModelProto, prepared: onnx.ModelProto, threads: int = 2):
        self.units = _ordered_units(qdq)
        model, self._blends = _blended(qdq, prepared)
        self._adjacent = _adjacency(model, self._blends)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.enable_cpu_mem_arena = False  # batched methods: give memory back between runs
        self.session = ort.InferenceSession(
            model.SerializeToString(), options, ["CPUExecutionProvider"]
        )
        self.outputs = [o.name for o in self.session.get_outputs()]

    def flags(self, quantized: Iterable[str]) -> dict[str, np.ndarray]:
        """The ``f`` inputs for a set of int8 nodes."""
        chosen = set(quantized)
        return {
            flag: np.asarray(float(bool(self._adjacent[flag] & chosen)), dtype=np.float32)
            for flag in self._blends
        }

    def run(self, feed: dict[str, np.ndarray], quantized: Iterable[str]) -> dict[str, np.ndarray]:
        values = self.session.run(None, feed | self.flags(quantized))
        return dict(zip(self.outputs, values, strict=True))


def _ordered_units(qdq: onnx.ModelProto) -> list[str]:
    """The quantized nodes in graph (topological) order."""
    chosen = quantized_nodes(qdq)
    return [n.name for n in qdq.graph.node if n.name in chosen]


def _blended(qdq: onnx.ModelProto, prepared: onnx.ModelProto) -> tuple[onnx.ModelProto, dict]:
    """The QDQ model with a blend after every DequantizeLinear; returns (model, {flag: dq_out})."""
    model = onnx.ModelProto()
    model.CopyFrom(qdq)
    graph = model.graph
    float_weights = {t.name: t for t in prepared.graph.initializer}
    present = {t.name for t in graph.initializer}
    q_inputs = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"}
    removed = _removed_activations(qdq, prepared)
    nodes, blends = [], {}
    for node in graph.node:
        nodes.append(node)
        if node.op_type != "DequantizeLinear":
            continue
        source = node.input[0]
        original = q_inputs.get(source) or _weight_name(source, float_weights)
        if original is None:
            continue
        output = node.output[0]
        if original in float_weights:
            original = _float_copy(graph, float_weights[original], present)
        elif original in removed:
            original = _reapplied(removed[original], original, nodes, graph, float_weights, present)
        raw, flag = f"{output}/int8", f"edgesal_sim/{len(blends)}"
        node.output[0] = raw
        diff, scaled = f"{output}/diff", f"{output}/scaled"
        nodes += [
            helper.make_node("Sub", [raw, original], [diff], name=f"{output}/sim_sub"),
            helper.make_node("Mul", [diff, flag], [scaled], name=f"{output}/sim_mul"),
            helper.make_node("Add", [original, scaled], [output], name=f"{output}/sim_add"),
        ]
        graph.input.append(helper.make_tensor_value_info(flag, onnx.TensorProto.FLOAT, []))
        blends[flag] = output
    del graph.node[:]
    graph.node.extend(nodes)
    return model, blends


def _removed_activations(qdq: onnx.ModelProto, prepared: onnx.ModelProto) -> dict:
    """Clip/Relu nodes the quantizer folded into the preceding node's output range, by output.

    The QDQ model then writes the activation's output name from the producer itself; its float
    value lacks the activation, so the simulator re-applies it on the float branch.
    """
    before = {o: n for n in prepared.graph.node for o in n.output}
    after = {o: n for n in qdq.graph.node for o in n.output}
    return {
        name: node
        for name, node in before.items()
        if node.op_type in ("Clip", "Relu")
        and name in after
        and after[name].op_type != node.op_type
    }


def _reapplied(activation, tensor, nodes, graph, float_weights, present) -> str:
    """Append ``activation`` applied to ``tensor``; returns its output name."""
    output = f"{tensor}/float"
    if output in present:
        return output
    for name in activation.input[1:]:
        if name and name not in present and name in float_weights:
            graph.initializer.append(float_weights[name])
            present.add(name)
    inputs = [tensor, *activation.input[1:]]
    nodes.append(helper.make_node(activation.op_type, inputs, [output], name=f"{output}/act"))
    present.add(output)
    return output


def _float_copy(graph: onnx.GraphProto, weight: onnx.TensorProto, present: set[str]) -> str:
    """Add the float weight under its own name (onnxruntime may reuse the original name for the
    dequantized bias) and return that name."""
    name = f"{weight.name}/float"
    if name not in present:
        copy = onnx.TensorProto()
        copy.CopyFrom(weight)
        copy.name = name
        graph.initializer.append(copy)
        present.add(name)
    return name


def _weight_name(quantized: str, float_weights: dict) -> str | None:
    """The float initializer onnxruntime quantized into ``quantized`` (``W_quantized``)."""
    suffix = "_quantized"
    if quantized.endswith(suffix) and quantized[: -len(suffix)] in float_weights:
        return quantized[: -len(suffix)]
    return None


def _adjacency(model: onnx.ModelProto, blends: dict[str, str]) -> dict[str, set[str]]:
    """For each flag, the quantized nodes next to its tensor (producer of the float tensor,
    consumers of the dequantized one)."""
    producers = {}
    consumers = defaultdict(set)
    for node in model.graph.node:
        if node.op_type in _QDQ or node.name.endswith(("/sim_sub", "/sim_mul", "/sim_add", "/act")):
            continue
        for out in node.output:
            producers[out] = node.name
        for name in node.input:
            consumers[name].add(node.name)
    q_inputs = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    dq_sources = {
        n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"
    }
    adjacent = {}
    for flag, output in blends.items():
        near = set(consumers[output])
        original = q_inputs.get(dq_sources.get(f"{output}/int8", ""))
        if original in producers:
            near.add(producers[original])
        adjacent[flag] = near
    return adjacent
