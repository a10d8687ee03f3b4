"""Rewrites that make a saliency graph quantizable with int8 kernels; the float function is kept.

- Constant folding: conv input-gradient kernels are flipped/transposed views of the forward
  weights, computed in the graph; folded, they are weights the quantizer can quantize per channel.
- Unsharing: a weight read by a forward node and a backward node (Gemm and its gradient Gemm) gets
  one copy per reader, because each needs its own per-channel axis.
- Sum of two tensors becomes Add (residual-branch gradients), which has an int8 kernel.
- 0/1 gradient masks (``Cast(condition)`` read only by Mul) become uint8 and are dequantized with
  scale 1: the masked product runs as an int8 multiply without quantizing the mask at run time.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgesal.quant.graph import fold_constants

WEIGHTED = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1}


def prepare(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with the rewrites above applied."""
    model = fold_constants(model)
    unshare_weights(model)
    sums_to_adds(model)
    masks_as_uint8(model)
    return model


def unshare_weights(model: onnx.ModelProto) -> None:
    """Give every weighted node after the first reader of an initializer its own copy."""
    initializers = {t.name: t for t in model.graph.initializer}
    seen: set[str] = set()
    for node in model.graph.node:
        slot = WEIGHTED.get(node.op_type)
        if slot is None or len(node.input) <= slot or node.input[slot] not in initializers:
            continue
        name = node.input[slot]
        if name in seen:
            copy_name = f"{name}/{node.name or node.output[0]}"
            array = numpy_helper.to_array(initializers[name])
            model.graph.initializer.append(numpy_helper.from_array(array, copy_name))
            node.input[slot] = copy_name
        seen.add(name)


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
