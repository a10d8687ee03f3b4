"""Conversion errors: they name the file, the operator and the node that stopped the conversion."""

from __future__ import annotations

import importlib
from types import ModuleType

from edgesal.errors import EdgesalError

TF_EXTRA = (
    "tf,tflite"  # reading .tflite files needs `tflite`; converting them, tensorflow + tf2onnx
)


class ConversionError(EdgesalError):
    """A model cannot be converted (unsupported operator or attribute, unreadable source)."""


class UnsupportedOpsError(ConversionError):
    """Operators the target format has no lowering for, all listed at once."""

    def __init__(self, target: str, nodes: list[tuple[str, str]], supported: list[str]):
        self.nodes = nodes
        listed = "\n".join(f"  - {op} (node '{name}')" for op, name in nodes)
        super().__init__(
            f"cannot convert to {target}; no lowering for these operators:\n{listed}\n"
            f"supported operators: {', '.join(sorted(supported))}"
        )


def node_label(node) -> str:
    """``Conv node 'conv1'`` (or the first output when the node has no name)."""
    name = node.name or f"output {node.output[0]}"
    return f"{node.op_type} node '{name}'"


def import_extra(module: str, feature: str, extra: str = TF_EXTRA) -> ModuleType:
    """``import module``, or a ConversionError saying which extra installs it (not a traceback)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = exc.name or module
        raise ConversionError(
            f"{feature} needs '{missing}', which is not installed: pip install \"edgesal[{extra}]\""
        ) from exc
