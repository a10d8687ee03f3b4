"""ONNX op type -> lowering into TFLite builtins; one module per op family registers its own."""

from __future__ import annotations

from collections.abc import Callable

import onnx
from onnx import helper

from converters.tflite.context import Lowering

LowerFn = Callable[[Lowering, onnx.NodeProto], None]
LOWERINGS: dict[str, LowerFn] = {}


def lowers(*op_types: str) -> Callable[[LowerFn], LowerFn]:
    """Register the decorated function as the lowering of ``op_types``."""

    def register(fn: LowerFn) -> LowerFn:
        for op_type in op_types:
            if op_type in LOWERINGS:
                raise ValueError(f"two TFLite lowerings for {op_type}")
            LOWERINGS[op_type] = fn
        return fn

    return register


def attrs(node: onnx.NodeProto) -> dict[str, object]:
    """The node's attributes as Python values (strings decoded)."""
    result = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        result[a.name] = value.decode() if isinstance(value, bytes) else value
    return result


def inputs(node: onnx.NodeProto) -> list[str]:
    """Input names with trailing omitted optionals removed ("" stays for middle ones)."""
    names = list(node.input)
    while names and not names[-1]:
        names.pop()
    return names
