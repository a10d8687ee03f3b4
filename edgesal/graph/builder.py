"""A small node builder: ``b.Mul(x, b.Cos(x))`` appends default-domain ONNX nodes and returns names.

Gradient rules emit plain forward operators through it, which keeps the saliency graph runnable on
any ONNX runtime, convertible to TFLite builtins and quantizable like any other graph.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal, overload

import numpy as np
import onnx
from onnx import helper, numpy_helper


class Builder:
    """Appends nodes and constant initializers to a graph with collision-free names.

    ``b.Op(*inputs, outputs=1, **attrs)`` returns the output name (or a list when ``outputs > 1``).
    An input of ``""`` stands for an omitted optional input, as in ONNX.
    """

    def __init__(self, graph: onnx.GraphProto, opset: int, prefix: str = "grad"):
        self.graph = graph
        self.opset = opset
        self.prefix = prefix
        self._taken: set[str] = _names_in(graph)
        self._counter = 0
        self._const_cache: dict[tuple, str] = {}
        self.scope = ""

    def unique(self, hint: str) -> str:
        """Return a tensor/node name based on ``hint`` that the graph does not use yet."""
        base = f"{self.prefix}/{self.scope}{hint}" if self.scope else f"{self.prefix}/{hint}"
        name = base
        while name in self._taken:
            self._counter += 1
            name = f"{base}_{self._counter}"
        self._taken.add(name)
        return name

    @overload
    def op(self, op_type: str, *inputs: str, outputs: Literal[1] = 1, **attrs: Any) -> str: ...

    @overload
    def op(self, op_type: str, *inputs: str, outputs: int, **attrs: Any) -> list[str]: ...

    def op(self, op_type: str, *inputs: str, outputs: int = 1, **attrs: Any) -> str | list[str]:
        """Append one ``op_type`` node; attributes whose value is None are left out."""
        outs = [self.unique(f"{op_type}_out") for _ in range(outputs)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        node = helper.make_node(op_type, list(inputs), outs, name=self.unique(op_type), **attrs)
        self.graph.node.append(node)
        return outs[0] if outputs == 1 else outs

    def __getattr__(self, op_type: str) -> Callable[..., Any]:
        # Any: the name (``outputs=1``) or the list of names; rules use the form they asked for.
        if not op_type[:1].isupper():
            raise AttributeError(op_type)
        return lambda *inputs, **attrs: self.op(op_type, *inputs, **attrs)

    def const(self, value, dtype: np.dtype | int | None = None, hint: str = "const") -> str:
        """Add (or reuse) an initializer holding ``value``; ``dtype`` may be numpy or ONNX enum."""
        if isinstance(dtype, int):
            dtype = onnx.helper.tensor_dtype_to_np_dtype(dtype)
        array = np.asarray(value, dtype=dtype)
        key = (array.dtype.str, array.shape, array.tobytes()) if array.size <= 64 else None
        if key is not None and key in self._const_cache:
            return self._const_cache[key]
        name = self.unique(hint)
        self.graph.initializer.append(numpy_helper.from_array(array, name))
        if key is not None:
            self._const_cache[key] = name
        return name

    def reduce(self, op_type: str, x: str, axes: Iterable[int], keepdims: int = 1) -> str:
        """``op_type`` (ReduceMax, ReduceL2, ...) over ``axes``: attribute or input, by opset."""
        axes = list(axes)
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.op(op_type, x, self.ints(axes), keepdims=keepdims)
        return self.op(op_type, x, axes=axes, keepdims=keepdims)

    def ints(self, values: Iterable[int], hint: str = "ints") -> str:
        """An int64 1-D constant, the form ONNX wants for shapes, axes, pads and starts."""
        return self.const(np.asarray(list(values), dtype=np.int64), hint=hint)


def _names_in(graph: onnx.GraphProto) -> set[str]:
    names = {i.name for i in graph.input} | {o.name for o in graph.output}
    names |= {t.name for t in graph.initializer}
    for node in graph.node:
        names.add(node.name)
        names.update(node.input)
        names.update(node.output)
    return names
