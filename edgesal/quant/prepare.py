"""Rewrites that make a saliency graph quantizable with int8 kernels; the float function is kept.

- Every node gets a unique name (float decisions and reports refer to nodes by name).
- Constant folding: conv input-gradient kernels are flipped/transposed views of the forward
  weights, computed in the graph; folded, they are weights the quantizer can quantize per channel.
- A weight read by a forward node and a backward node (Gemm and its gradient Gemm) is stored once;
  :func:`shared_weights` names it so it is quantized per tensor (the two readers would want
  different per-channel axes).
- Sum of two tensors becomes Add (residual-branch gradients), which has an int8 kernel.
- A classifier row looked up for an argmax seed is the one-hot product again, which reads the
  weights the forward pass reads (one int8 copy instead of a float matrix kept for the lookup).
- 0/1 gradient masks (``Cast(condition)`` read only by Mul) become uint8 and are dequantized with
  scale 1: the masked product runs as an int8 multiply without quantizing the mask at run time.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgesal import metadata
from edgesal.graph.info import attrs
from edgesal.quant.graph import descendants, fold_constants

WEIGHTED = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1}
COMPARISONS = ("Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Equal")


def prepare(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with the rewrites above applied."""
    model = fold_constants(model)
    one_hot_products(model)
    name_nodes(model)
    sums_to_adds(model)
    masks_as_uint8(model)
    return model


def name_nodes(model: onnx.ModelProto) -> None:
    """Name unnamed (or duplicate-named) nodes after their first output, in place."""
    taken: set[str] = set()
    for node in model.graph.node:
        if not node.name or node.name in taken:
            base = f"{node.op_type}:{node.output[0]}"
            name, k = base, 1
            while name in taken:
                name, k = f"{base}#{k}", k + 1
            node.name = name
        taken.add(node.name)


def shared_weights(model: onnx.ModelProto) -> list[str]:
    """Initializers read as the weight of more than one weighted node."""
    initializers = {t.name for t in model.graph.initializer}
    readers: dict[str, int] = {}
    for node in model.graph.node:
        slot = WEIGHTED.get(node.op_type)
        if slot is not None and len(node.input) > slot and node.input[slot] in initializers:
            readers[node.input[slot]] = readers.get(node.input[slot], 0) + 1
    return sorted(name for name, count in readers.items() if count > 1)


def sums_to_adds(model: onnx.ModelProto) -> None:
    """Sum(a, b, ...) -> Add(Add(a, b), ...) in place."""
    nodes = []
    for node in model.graph.node:
        if node.op_type != "Sum" or len(node.input) < 2:
            nodes.append(node)
            continue
        acc = node.input[0]
        for k, other in enumerate(node.input[1:], start=1):
            last = k == len(node.input) - 1
            out = node.output[0] if last else f"{node.output[0]}/add{k}"
            name = node.name if last else f"{node.name}/add{k}"
            nodes.append(helper.make_node("Add", [acc, other], [out], name=name))
            acc = out
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def masks_as_uint8(model: onnx.ModelProto) -> list[str]:
    """Cast(bool -> float) read only by Mul nodes -> Cast(bool -> uint8) + DequantizeLinear(1, 0).

    Returns the names of the dequantized mask tensors (exactly 0.0 or 1.0).
    """
    graph = model.graph
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in inferred.graph.value_info}
    types |= {vi.name: vi.type.tensor_type.elem_type for vi in graph.input}
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    scale, zero = "edgesal_quant/mask_scale", "edgesal_quant/mask_zero"
    masks, nodes = [], []
    for node in graph.node:
        nodes.append(node)
        if node.op_type != "Cast" or types.get(node.input[0]) != TensorProto.BOOL:
            continue
        to = next(a.i for a in node.attribute if a.name == "to")
        users = readers.get(node.output[0], [])
        if to != TensorProto.FLOAT or not users or any(u.op_type != "Mul" for u in users):
            continue
        mask = node.output[0]
        as_uint8 = f"{mask}/uint8"
        node.output[0] = as_uint8
        del node.attribute[:]
        node.attribute.append(helper.make_attribute("to", TensorProto.UINT8))
        nodes.append(
            helper.make_node(
                "DequantizeLinear", [as_uint8, scale, zero], [mask], name=f"{mask}/dequantize"
            )
        )
        masks.append(mask)
    if masks:
        graph.initializer.append(numpy_helper.from_array(np.float32(1.0), scale))
        graph.initializer.append(numpy_helper.from_array(np.uint8(0), zero))
    del graph.node[:]
    graph.node.extend(nodes)
    return masks


def masked_products(model: onnx.ModelProto) -> dict[str, str]:
    """``{product: gradient}`` for every Mul of a gradient by a uint8 mask (see
    :func:`masks_as_uint8`): the product takes the gradient's range, so masking is lossless."""
    masks = {
        n.output[0]
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.name.endswith("/dequantize")
    }
    pairs = {}
    for node in model.graph.node:
        if node.op_type == "Mul" and len(node.input) == 2:
            a, b = node.input
            if b in masks and a not in masks:
                pairs[node.output[0]] = a
            elif a in masks and b not in masks:
                pairs[node.output[0]] = b
    return pairs


def compared_bounds(model: onnx.ModelProto) -> dict[str, list[float]]:
    """``{tensor: constants}`` for comparisons of a tensor with constants (the gradient masks'
    ``y > 0``, ``y < 6``): a quantized tensor's range must reach those constants, or the mask read
    from it would be wrong at the clipped end."""
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    bounds: dict[str, list[float]] = {}
    for node in model.graph.node:
        if node.op_type not in COMPARISONS or len(node.input) != 2:
            continue
        for tensor, other in (node.input, reversed(node.input)):
            if tensor not in constants and other in constants and constants[other].size == 1:
                bounds.setdefault(tensor, []).append(float(constants[other].ravel()[0]))
    return bounds


def one_hot_products(model: onnx.ModelProto) -> int:
    """Undo :func:`edgesal.graph.onehot.gather_one_hot_products` (in place): each row lookup of
    a constant matrix by ArgMax indices becomes the one-hot product again, and ``edgesal.seeds``
    names the one-hot rows. Quantization wants this form: the product reads the weights the
    forward pass reads, so both use one int8 copy, where a lookup would keep the float matrix in
    the file. Returns how many lookups were undone."""
    graph = model.graph
    constants = {t.name: t for t in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    nodes, rows = [], {}
    for node in graph.node:
        table = constants.get(node.input[0]) if node.op_type == "Gather" else None
        source = producers.get(node.input[1]) if table is not None else None
        axis = attrs(node).get("axis", 0)
        if (
            source is None
            or source.op_type != "ArgMax"
            or attrs(source).get("keepdims", 1) != 0
            or len(table.dims) != 2
            or axis not in (0, 1)
        ):
            nodes.append(node)
            continue
        base = node.name or node.output[0]
        one_hot = f"{base}/one_hot"
        depth = f"{base}/depth"
        values = f"{base}/values"
        dtype = helper.tensor_dtype_to_np_dtype(table.data_type)
        graph.initializer.append(numpy_helper.from_array(np.asarray([table.dims[axis]]), depth))
        graph.initializer.append(numpy_helper.from_array(np.asarray([0, 1], dtype), values))
        nodes.append(helper.make_node("OneHot", [node.input[1], depth, values], [one_hot], axis=-1))
        product = [one_hot, node.input[0]] if axis == 0 else [node.input[0], one_hot]
        nodes.append(helper.make_node("Gemm", product, node.output, name=node.name, transB=axis))
        rows[node.output[0]] = one_hot
    if rows:
        del graph.node[:]
        graph.node.extend(nodes)
        _seed_rows(model, rows)
    return len(rows)


def _seed_rows(model: onnx.ModelProto, rows: dict[str, str]) -> None:
    """``edgesal.seeds``: the lookups' one-hot rows replace the seeds computed from them."""
    seeds = metadata.read(model).get("seeds")
    if not isinstance(seeds, list):
        return
    downstream = descendants(model.graph, list(rows.values()))
    kept = [s for s in seeds if s not in downstream]
    metadata.write(model, {"seeds": kept + list(rows.values())})
