"""ONNX (a saliency export or any static-shape float model) -> TFLite flatbuffer, builtins only.

Stages: load and upgrade, fold constants (weight transposes and flips of the gradient rules
become plain weights), list every operator without a lowering at once, lower node by node with
the image input stored NHWC, give the graph outputs their ONNX names in logical layout, drop
dead tensors, and attach the edgesal metadata (layout rewritten to NHWC) as ``Model.metadata``
entry ``edgesal``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Collection
from pathlib import Path
from typing import Protocol

import numpy as np
import onnx

from edgesal import metadata
from edgesal.converters.cleanup.fold import fold_constants
from edgesal.converters.errors import ConversionError, UnsupportedOpsError
from edgesal.converters.tflite import layout
from edgesal.converters.tflite.context import Lowering
from edgesal.converters.tflite.lift1d import lift_1d
from edgesal.converters.tflite.ops import LOWERINGS
from edgesal.converters.tflite.schema import FlatModel
from edgesal.errors import EdgesalError
from edgesal.graph.idioms.forms import portable
from edgesal.image_input import find_image_input, graph_inputs
from edgesal.onnx_io import load_model, upgraded

METADATA_NAME = "edgesal"


class NodeHook(Protocol):
    """Lowers some nodes before the registry does (the int8 lowering of QDQ models,
    converters/tflite/quantized.py): ``op_types`` it adds to the supported set; a call returns
    False to leave the node to the registry."""

    op_types: Collection[str]

    def __call__(self, ctx: Lowering, node: onnx.NodeProto) -> bool: ...


def to_tflite(model: onnx.ModelProto | str | Path, hook: NodeHook | None = None) -> bytes:
    """The TFLite flatbuffer of ``model`` (static shapes; image input stored NHWC)."""
    model = prepare(model, hook.op_types if hook is not None else ())
    ctx = Lowering(model)
    image = _nchw_image_input(model, ctx)
    for value in graph_inputs(model):
        perm = layout.NHWC if value.name == image else None
        ctx.flat.inputs.append(ctx.output(value.name, perm))
    for node in model.graph.node:
        ctx.node = node
        if hook is None or not hook(ctx, node):
            LOWERINGS[node.op_type](ctx, node)
    ctx.node = None
    _name_outputs(ctx, [o.name for o in model.graph.output])
    ctx.flat.metadata[METADATA_NAME] = tflite_metadata(model, image)
    prune(ctx.flat)
    return ctx.flat.serialize()


def prepare(model: onnx.ModelProto | str | Path, extra: Collection[str] = ()) -> onnx.ModelProto:
    """A folded, shape-checked copy; every unsupported operator (not in the registry nor in
    ``extra``) reported at once."""
    model = load_model(model) if isinstance(model, str | Path) else copy.deepcopy(model)
    model = upgraded(portable(model))  # a file exported --for onnxruntime-cpu: generic masks
    fold_constants(model)
    if lift_1d(model):  # Conv1d and its gradient as 2-D ops; their weight Unsqueezes fold
        fold_constants(model)
    missing = [
        (n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}", n.name)
        for n in model.graph.node
        if n.domain not in ("", "ai.onnx")
        or (n.op_type not in LOWERINGS and n.op_type not in extra)
    ]
    if missing:
        raise UnsupportedOpsError("TFLite builtins", missing, list(LOWERINGS))
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except onnx.shape_inference.InferenceError as exc:
        raise ConversionError(f"shape inference failed: {str(exc).splitlines()[0]}") from exc
    _settle_shapes(model)
    return model


def _settle_shapes(model: onnx.ModelProto) -> None:
    """Give tensors whose shape inference cannot fix (Slice and Pad with run-time starts, as a
    window placed at run time) the shape they take when run, checked to be the same for two
    different feeds; a shape that changes with the data is refused."""
    unknown = [
        v
        for v in list(model.graph.value_info) + list(model.graph.output)
        if not all(d.HasField("dim_value") for d in v.type.tensor_type.shape.dim)
    ]
    if not unknown:
        return
    import onnxruntime as ort

    probe = copy.deepcopy(model)
    listed = {o.name for o in probe.graph.output}
    probe.graph.output.extend(
        onnx.helper.make_tensor_value_info(v.name, v.type.tensor_type.elem_type, None)
        for v in unknown
        if v.name not in listed
    )
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [v.name for v in unknown]
    shapes = []
    for fill in (0, 1):
        feeds = {
            i.name: np.full(
                [d.dim_value for d in i.type.tensor_type.shape.dim],
                fill,
                onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type),
            )
            for i in graph_inputs(model)
        }
        shapes.append([o.shape for o in session.run(names, feeds)])
    for v, first, second in zip(unknown, *shapes, strict=True):
        if first != second:
            raise ConversionError(f"tensor '{v.name}' changes shape with the input data")
        del v.type.tensor_type.shape.dim[:]
        v.type.tensor_type.shape.dim.extend(
            onnx.TensorShapeProto.Dimension(dim_value=d) for d in first
        )


def _nchw_image_input(model: onnx.ModelProto, ctx: Lowering) -> str | None:
    """The image input to store NHWC (None when the model already takes NHWC or has none)."""
    meta = metadata.read(model)
    try:
        image = find_image_input(model, ctx.info, meta.get("input"), meta.get("layout"))
    except EdgesalError:
        return None
    return (
        image.name
        if image.layout == "NCHW" and image.name == image.tensor
        else (image.name if image.layout == "NCHW" else None)
    )


def _name_outputs(ctx: Lowering, names: list[str]) -> None:
    """Each graph output becomes a distinct tensor, stored in logical layout, named as in ONNX."""
    flat = ctx.flat
    taken: set[int] = set(flat.inputs)
    for name in names:
        if ctx.held(name) is None:
            raise ConversionError(f"graph output '{name}' is a constant; nothing computes it")
        index = ctx.tensor(name, layout.identity(len(ctx.shape(name))))
        if index in taken or flat.tensors[index].data is not None:
            shape = flat.tensors[index].shape
            index = ctx.op("RESHAPE", [index, ctx.ints(shape)], shape, flat.tensors[index].dtype)
        taken.add(index)
        for t in flat.tensors:
            if t.name == name:
                t.name = f"{name}/stored"
        flat.tensors[index].name = name
        flat.outputs.append(index)


def tflite_metadata(model: onnx.ModelProto, image: str | None) -> bytes:
    """The ``edgesal.*`` map (string values, as in ONNX metadata_props) with layout NHWC."""
    props = {p.key: p.value for p in model.metadata_props if p.key.startswith(metadata.PREFIX)}
    if image is not None:
        props[metadata.PREFIX + "layout"] = "NHWC"
        key = metadata.PREFIX + "preprocess"
        if key in props:
            pre = json.loads(props[key])
            pre["layout"] = "NHWC"
            props[key] = json.dumps(pre)
    return json.dumps(props, sort_keys=True).encode()


def prune(flat: FlatModel) -> None:
    """Remove operators whose outputs nobody reads, then unreferenced tensors (renumbered)."""
    needed = set(flat.outputs)
    kept = []
    for op in reversed(flat.operators):
        if any(o in needed for o in op.outputs):
            kept.append(op)
            needed.update(i for i in op.inputs if i >= 0)
    flat.operators = list(reversed(kept))
    used = set(flat.inputs) | set(flat.outputs)
    for op in flat.operators:
        used.update(i for i in op.inputs + op.outputs if i >= 0)
    order = sorted(used)
    renumber = {old: new for new, old in enumerate(order)}
    flat.tensors = [flat.tensors[i] for i in order]
    for op in flat.operators:
        op.inputs = [renumber[i] if i >= 0 else -1 for i in op.inputs]
        op.outputs = [renumber[i] for i in op.outputs]
    flat.inputs = [renumber[i] for i in flat.inputs]
    flat.outputs = [renumber[i] for i in flat.outputs]
