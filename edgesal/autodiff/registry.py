"""The gradient-rule registry: one vector-Jacobian-product rule per ONNX operator type.

A rule receives a :class:`GradContext` (the node, its forward tensors, the incoming output
gradients and a builder) and returns one gradient tensor name, or None, per node input. The engine
alone checks the count, sums gradients that reach a tensor twice and un-broadcasts. Tests walk
:data:`RULES`, so a rule registered here cannot go unchecked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx

from edgesal.graph.builder import Builder
from edgesal.graph.info import TensorInfo


@dataclass
class GradContext:
    """Everything a rule may read or emit for one node."""

    node: onnx.NodeProto
    b: Builder
    info: TensorInfo
    dy: list[str | None]
    needs: list[bool]
    mode: str = "vanilla"
    options: dict = field(default_factory=dict)

    @property
    def x(self) -> list[str]:
        """The node's input names."""
        return list(self.node.input)

    @property
    def y(self) -> list[str]:
        """The node's output names."""
        return list(self.node.output)

    @property
    def opset(self) -> int:
        return self.b.opset

    def attr(self, name: str, default=None):
        for a in self.node.attribute:
            if a.name == name:
                value = onnx.helper.get_attribute_value(a)
                return value.decode() if isinstance(value, bytes) else value
        return default

    def shape(self, name: str) -> tuple[int, ...]:
        return self.info.shape(name)

    def value(self, name: str) -> np.ndarray | None:
        return self.info.value(name)

    def dtype(self, name: str) -> np.dtype:
        return self.info.np_dtype(name)

    def scalar(self, value: float, like: str) -> str:
        """A scalar constant with the element type of tensor ``like``."""
        return self.b.const(np.asarray(value, dtype=self.dtype(like)))

    def dy_or_zeros(self, i: int) -> str:
        """Incoming gradient of output ``i``, or zeros shaped like that output when none arrives."""
        if self.dy[i] is not None:
            return self.dy[i]
        out = self.y[i]
        return self.b.const(np.zeros(self.shape(out), dtype=self.dtype(out)), hint="zeros")


RuleFn = Callable[[GradContext], Sequence[str | None]]


@dataclass(frozen=True)
class Rule:
    """A registered VJP rule; ``broadcasting`` asks the engine to reduce input gradients."""

    op_type: str
    fn: RuleFn
    broadcasting: bool
    module: str


RULES: dict[str, Rule] = {}


def register(*op_types: str, broadcasting: bool = False) -> Callable[[RuleFn], RuleFn]:
    """Decorator: register ``fn`` as the VJP rule of each of ``op_types``."""

    def wrap(fn: RuleFn) -> RuleFn:
        for op_type in op_types:
            if op_type in RULES:
                raise RuntimeError(f"gradient rule for {op_type} registered twice")
            RULES[op_type] = Rule(op_type, fn, broadcasting, fn.__module__)
        return fn

    return wrap


def register_zero(*op_types: str) -> None:
    """Register operators whose derivative is zero almost everywhere (comparisons, Floor, ...)."""

    def zero(ctx: GradContext) -> list[None]:
        return [None] * len(ctx.node.input)

    for op_type in op_types:
        register(op_type)(zero)


def supported_ops() -> list[str]:
    """Sorted operator types that have a gradient rule."""
    import edgesal.autodiff.rules  # noqa: F401  (registers the rules)

    return sorted(RULES)
