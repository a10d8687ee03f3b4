"""Static facts about a graph's tensors: shapes from shape inference, dtypes, constant values."""

from __future__ import annotations

from typing import Any, TypeGuard

import numpy as np
import onnx
from onnx import numpy_helper

from edgesal.errors import InputError


class TensorInfo:
    """Shapes, element types and constant values of every tensor in a (shape-inferred) model."""

    def __init__(self, model: onnx.ModelProto, strict: bool = False):
        """Infer shapes; ``strict`` re-raises inference errors instead of inferring what it can."""
        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
        except onnx.shape_inference.InferenceError:
            if strict:
                raise
            # Unknown (custom-domain) ops: keep what can be inferred; the engine names them.
            inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
        graph = inferred.graph
        self._types: dict[str, onnx.TypeProto] = {}
        for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
            self._types[vi.name] = vi.type
        self._values: dict[str, np.ndarray] = {
            t.name: numpy_helper.to_array(t) for t in graph.initializer
        }
        for node in graph.node:
            if node.op_type == "Constant" and len(node.output) == 1:
                self._values[node.output[0]] = _constant_value(node)

    def alias(self, mapping: dict[str, str]) -> None:
        """Give each copy in ``mapping`` (original -> copy) its original's type and value: a copy
        of the graph at the same batch needs no new shape inference."""
        for original, copy in mapping.items():
            if original in self._types:
                self._types[copy] = self._types[original]
            if original in self._values:
                self._values[copy] = self._values[original]

    def has(self, name: str) -> bool:
        return name in self._types or name in self._values

    def dtype(self, name: str) -> int:
        """ONNX element type (``onnx.TensorProto.FLOAT`` ...) of tensor ``name``."""
        if name in self._values:
            return onnx.helper.np_dtype_to_tensor_dtype(self._values[name].dtype)
        return self._types[name].tensor_type.elem_type

    def np_dtype(self, name: str) -> np.dtype:
        return onnx.helper.tensor_dtype_to_np_dtype(self.dtype(name))

    def dims(self, name: str) -> tuple[int | str | None, ...] | None:
        """Shape with symbolic dims as strings (None where unknown), or None if rank is unknown."""
        if name in self._values:
            return tuple(self._values[name].shape)
        tensor_type = self._types.get(name)
        if tensor_type is None or not tensor_type.tensor_type.HasField("shape"):
            return None
        return tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in tensor_type.tensor_type.shape.dim
        )

    def shape(self, name: str) -> tuple[int, ...]:
        """Fully static shape of ``name``; raises InputError naming the tensor otherwise."""
        dims = self.dims(name)
        if dims is None or not is_static(dims):
            raise InputError(
                f"tensor '{name}' has no static shape ({dims}); gradient rules need static "
                "shapes: fix the input shape with --input-shape/--batch"
            )
        return dims

    def value(self, name: str) -> np.ndarray | None:
        """The constant value of ``name`` (initializer or Constant node), else None."""
        return self._values.get(name)


def is_static(dims: tuple[int | str | None, ...]) -> TypeGuard[tuple[int, ...]]:
    """True when every dim of :meth:`TensorInfo.dims` is a known size (no symbol, no None)."""
    return all(isinstance(d, int) for d in dims)


def attrs(node: onnx.NodeProto) -> dict[str, Any]:
    """The node's attributes as Python values (strings decoded); each value's type is the
    attribute's (int, float, str, list, tensor), known only at run time, hence ``Any``."""
    result = {}
    for a in node.attribute:
        value = onnx.helper.get_attribute_value(a)
        result[a.name] = value.decode() if isinstance(value, bytes) else value
    return result


def _constant_value(node: onnx.NodeProto) -> np.ndarray:
    attr = node.attribute[0]
    if attr.name == "value":
        return numpy_helper.to_array(attr.t)
    scalar = onnx.helper.get_attribute_value(attr)
    return np.asarray(scalar)
