"""ONNX op type -> lowering into TFLite builtins; one module per op family registers its own."""

from __future__ import annotations

from collections.abc import Callable

import onnx

from edgesal.converters.tflite.context import Lowering
from edgesal.graph.info import attrs  # noqa: F401  (the lowerings import it from here)

LowerFn = Callable[[Lowering, onnx.NodeProto], None]
LOWERINGS: dict[str, LowerFn] = {}
EMITS: dict[str, str] = {}  # op type -> the TFLite builtins it becomes (for the docs table)


def lowers(*op_types: str, emits: str | dict[str, str] | None = None):
    """Register the decorated function as the lowering of ``op_types``; ``emits`` names the
    builtins (one string, or per op type) when the docstring's first paragraph does not."""

    def register(fn: LowerFn) -> LowerFn:
        for op_type in op_types:
            if op_type in LOWERINGS:
                raise ValueError(f"two TFLite lowerings for {op_type}")
            LOWERINGS[op_type] = fn
            if emits is not None:
                EMITS[op_type] = emits[op_type] if isinstance(emits, dict) else emits
        return fn

    return register


def inputs(node: onnx.NodeProto) -> list[str]:
    """Input names with trailing omitted optionals removed ("" stays for middle ones)."""
    names = list(node.input)
    while names and not names[-1]:
        names.pop()
    return names


def lowerings_markdown() -> str:
    """The table of lowerings in docs/converters.md: op, family module, docstring summary."""
    lines = ["| ONNX operator | family | lowering |", "|---|---|---|"]
    for op in sorted(LOWERINGS):
        fn = LOWERINGS[op]
        family = fn.__module__.rsplit(".", 1)[-1]
        summary = EMITS.get(op) or " ".join((fn.__doc__ or "").strip().split("\n\n")[0].split())
        lines.append(f"| {op} | {family} | {summary.replace('|', '/')} |")
    return "\n".join(lines) + "\n"
