"""Reading a saliency model for quantization: which tensors are gradients, and folded weights.

An exported saliency model is the original forward graph plus a backward pass that starts at the
*seed* (the cotangent of the explained score, built by :mod:`edgesal.export.targets`). Every
tensor that depends on a seed is a gradient or derived from one (the map's post-processing
included); every other tensor is a forward activation, including the batched forward copies
that integrated gradients and SmoothGrad run. Quantization treats the two sets differently.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from edgesal import metadata
from edgesal.errors import InputError
from edgesal.graph.fold import remove_unused_initializers

SEED_INIT_PREFIX = "edgesal/seed"
_NONDETERMINISTIC = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike"}
_FLOATS = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE}


@dataclass(frozen=True)
class SaliencyGraph:
    """The parts of an exported saliency model that calibration needs to tell apart."""

    image: str  # the image input fed at run time
    scores: str  # the model's prediction output
    saliency: str  # the map output
    seeds: tuple[str, ...]  # where the backward pass starts
    backward: frozenset[str]  # tensors that depend on a seed
    method: str

    def is_backward(self, tensor: str) -> bool:
        return tensor in self.backward


def describe(model: onnx.ModelProto, where: str = "model") -> SaliencyGraph:
    """Find image, scores, map, seeds and the backward tensors; InputError if ``model`` is not
    an edgesal saliency model (no ``edgesal.outputs`` metadata naming a saliency output)."""
    meta = metadata.read(model)
    outputs = meta.get("outputs") if isinstance(meta.get("outputs"), dict) else {}
    saliency = outputs.get("saliency")
    names = {o.name for o in model.graph.output}
    if not saliency or "method" not in meta or saliency not in names:
        raise InputError(
            f"{where}: not an edgesal saliency model (no edgesal.method / edgesal.outputs "
            "metadata naming a saliency output); export one first with 'edgesal export'"
        )
    if outputs.get("saliency_by_method"):
        raise InputError(
            f"{where}: holds several maps ({', '.join(outputs['saliency_by_method'])}); "
            "quantize a single-method export"
        )
    seeds = _seeds(model, meta)
    if not seeds:
        raise InputError(f"{where}: no backward seed found (OneHot or '{SEED_INIT_PREFIX}*')")
    return SaliencyGraph(
        image=str(meta.get("input") or model.graph.input[0].name),
        scores=str(outputs.get("scores") or model.graph.output[0].name),
        saliency=saliency,
        seeds=tuple(seeds),
        backward=frozenset(descendants(model.graph, seeds)),
        method=str(meta["method"]),
    )


def _seeds(model: onnx.ModelProto, meta: dict) -> list[str]:
    """Seed tensors: the ``edgesal.seeds`` metadata when the exporter wrote it, else the
    exporter's conventions (the OneHot of argmax/input targets, the constant ``edgesal/seed``)."""
    if isinstance(meta.get("seeds"), list):
        return [str(s) for s in meta["seeds"]]
    found = [n.output[0] for n in model.graph.node if n.op_type == "OneHot"]
    found += [t.name for t in model.graph.initializer if t.name.startswith(SEED_INIT_PREFIX)]
    return found


def descendants(graph: onnx.GraphProto, roots: Iterable[str]) -> set[str]:
    """Every tensor computed (transitively) from ``roots``, the roots included."""
    reached = set(roots)
    for node in graph.node:  # nodes are topologically sorted (checked by onnx.checker)
        if any(name in reached for name in node.input):
            reached.update(o for o in node.output if o)
    return reached


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy where every node computed from initializers alone is replaced by its value.

    The gradient rules derive flipped and transposed conv kernels from the forward weights inside
    the graph; folded, they become initializers that the quantizer can quantize as weights.
    """
    model = copy.deepcopy(model)
    graph = model.graph
    known = {t.name for t in graph.initializer}
    constant_nodes = []
    for node in graph.node:
        inputs = [i for i in node.input if i]
        if node.op_type in _NONDETERMINISTIC or node.domain not in ("", "ai.onnx"):
            continue
        if all(i in known for i in inputs):
            constant_nodes.append(node)
            known.update(node.output)
    if not constant_nodes:
        return model
    produced = {o for n in constant_nodes for o in n.output}
    consumers = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    wanted = sorted(produced & consumers)
    values = _evaluate(model, constant_nodes, wanted)
    folded_ids = {id(n) for n in constant_nodes}
    kept = [n for n in graph.node if id(n) not in folded_ids]
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(numpy_helper.from_array(v, n) for n, v in values.items())
    remove_unused_initializers(model)
    return model


def _evaluate(model: onnx.ModelProto, nodes: list, outputs: list[str]) -> dict[str, np.ndarray]:
    """Run ``nodes`` (inputs: initializers only) with onnxruntime and return ``outputs``."""
    graph = onnx.helper.make_graph(
        nodes,
        "constants",
        [],
        [onnx.helper.make_empty_tensor_value_info(name) for name in outputs],
        list(model.graph.initializer),
    )
    sub = onnx.helper.make_model(graph, opset_imports=model.opset_import)
    sub.ir_version = model.ir_version
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3  # not a warning per initializer these graphs leave unread
    session = ort.InferenceSession(sub.SerializeToString(), options, ["CPUExecutionProvider"])
    return dict(zip(outputs, session.run(outputs, {}), strict=True))


def float_tensors(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Shapes of the float tensors that nodes produce (shape inference), by name."""
    inferred = onnx.shape_inference.infer_shapes(model)
    result = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        t = vi.type.tensor_type
        if t.elem_type in _FLOATS and t.HasField("shape"):
            result[vi.name] = tuple(d.dim_value for d in t.shape.dim)
    return result
