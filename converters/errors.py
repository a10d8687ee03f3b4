"""Conversion errors: they name the file, the operator and the node that stopped the conversion."""

from __future__ import annotations

from edgesal.errors import EdgesalError


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
