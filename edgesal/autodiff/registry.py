"""The gradient-rule registry: one vector-Jacobian-product rule per ONNX operator type.

A rule receives a :class:`GradContext` (the node, its forward tensors, the incoming output
gradients and a builder) and returns one gradient tensor name, or None, per node input. The engine
alone checks the count, sums gradients that reach a tensor twice and un-broadcasts. Tests walk
:data:`RULES`, so a rule registered here cannot go unchecked.

Every operator with a rule has its traits (pointwise, commutes with Transpose, zero derivative,
guided variant) declared in :mod:`edgesal.graph.optraits`, the table receptive fields, the
cleanup passes and the docs read: :func:`register` refuses an undeclared operator, and a
zero-derivative rule must be declared ``zero`` there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import onnx

from edgesal.graph.builder import Builder
from edgesal.graph.info import TensorInfo
from edgesal.graph.optraits import TRAITS, Traits


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

    @property
    def dy0(self) -> str:
        """Incoming gradient of output 0. The engine runs a rule only when some gradient arrives,
        so for a single-output node this is never None; the check states that for the types."""
        dy = self.dy[0]
        if dy is None:
            raise RuntimeError(f"{self.node.op_type}: no gradient reached output {self.y[0]}")
        return dy

    def dy_or_zeros(self, i: int) -> str:
        """Incoming gradient of output ``i``, or zeros shaped like that output when none arrives."""
        dy = self.dy[i]
        if dy is not None:
            return dy
        out = self.y[i]
        return self.b.const(np.zeros(self.shape(out), dtype=self.dtype(out)), hint="zeros")


def unbroadcast(b: Builder, info: TensorInfo, grad: str, grad_shape: tuple, target: str) -> str:
    """Sum ``grad`` (shaped like a broadcast result) down to the shape of ``target``."""
    shape = info.shape(target)
    if tuple(grad_shape) == tuple(shape):
        return grad
    lead = len(grad_shape) - len(shape)
    padded = (1,) * lead + tuple(shape)
    axes = [i for i, (g, s) in enumerate(zip(grad_shape, padded, strict=True)) if s == 1 and g != 1]
    axes = sorted(set(axes) | set(range(lead)))
    if axes:
        grad = b.ReduceSum(grad, b.ints(axes), keepdims=1)
    return b.Reshape(grad, b.ints(shape))


# A list, not any Sequence: a str is a Sequence of str, and a rule returning one name would be
# split into characters by the engine.
RuleFn = Callable[[GradContext], list[str | None]]


@dataclass(frozen=True)
class Rule:
    """A registered VJP rule; ``broadcasting`` asks the engine to reduce input gradients."""

    op_type: str
    fn: RuleFn
    broadcasting: bool
    module: str

    @property
    def traits(self) -> Traits:
        """The operator's declared traits (:mod:`edgesal.graph.optraits`)."""
        return TRAITS[self.op_type]

    @property
    def zero(self) -> bool:
        """True for an operator whose derivative is zero almost everywhere."""
        return self.traits.zero


RULES: dict[str, Rule] = {}

RuleFnT = TypeVar("RuleFnT", bound=RuleFn)


def register(*op_types: str, broadcasting: bool = False) -> Callable[[RuleFnT], RuleFnT]:
    """Decorator: register ``fn`` as the VJP rule of each of ``op_types`` (each declared in
    :mod:`edgesal.graph.optraits`, and not declared ``zero``: those come from
    :func:`register_zero`). The type checker holds ``fn`` to :data:`RuleFn`: a rule with another
    signature fails ``make typecheck``."""

    def wrap(fn: RuleFnT) -> RuleFnT:
        for op_type in op_types:
            if op_type in RULES:
                raise RuntimeError(f"gradient rule for {op_type} registered twice")
            if op_type not in TRAITS:
                raise RuntimeError(f"declare the traits of {op_type} in edgesal/graph/optraits.py")
            if TRAITS[op_type].zero and fn is not _zero:
                raise RuntimeError(f"{op_type} is declared zero-derivative but has a rule")
            RULES[op_type] = Rule(op_type, fn, broadcasting, fn.__module__)
        return fn

    return wrap


def _zero(ctx: GradContext) -> list[str | None]:
    """No gradient flows back (the derivative is zero almost everywhere)."""
    return [None] * len(ctx.node.input)


def register_zero(*op_types: str) -> None:
    """Register operators declared ``zero`` in the trait table (comparisons, Floor, ...)."""
    for op_type in op_types:
        if not TRAITS.get(op_type, Traits()).zero:
            raise RuntimeError(f"{op_type} is not declared zero-derivative in optraits")
        register(op_type)(_zero)


@dataclass(frozen=True)
class Match:
    """A subgraph a composite rule recognized: ``inputs`` get the gradient, ``tensors`` names
    the forward tensors the rule reads, ``interior`` every tensor computed inside the subgraph
    (their per-operator rules are skipped on the path through its output)."""

    inputs: tuple[str, ...]
    tensors: dict[str, str]
    interior: tuple[str, ...]


MatchFn = Callable[[onnx.NodeProto, dict[str, onnx.NodeProto], TensorInfo], Match | None]
CompositeFn = Callable[[Builder, TensorInfo, str, Match], list[str]]


@dataclass(frozen=True)
class Composite:
    """One VJP for a subgraph that exporters write for one function (GELU as five nodes): the
    whole derivative in fewer backward passes than the per-operator rules of its parts.
    ``match`` looks at the subgraph's last node; ``fn`` returns one gradient per match input."""

    name: str
    match: MatchFn
    fn: CompositeFn
    module: str


COMPOSITES: dict[str, Composite] = {}


def register_composite(name: str, match: MatchFn) -> Callable[[CompositeFn], CompositeFn]:
    """Decorator: register ``fn`` as the VJP of the subgraphs ``match`` recognizes."""

    def wrap(fn: CompositeFn) -> CompositeFn:
        if name in COMPOSITES:
            raise RuntimeError(f"composite rule {name} registered twice")
        COMPOSITES[name] = Composite(name, match, fn, fn.__module__)
        return fn

    return wrap
