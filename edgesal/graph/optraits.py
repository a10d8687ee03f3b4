"""What each ONNX operator is, apart from its gradient: one declarative table every layer reads.

``TRAITS[op]`` is read by the gradient registry (a rule for an undeclared operator is refused;
the zero-derivative rules are registered from it), the receptive-field analysis
(:mod:`edgesal.roi.receptive`: pointwise operators are spatially local with a 1x1 window), the
ONNX cleanup passes (``edgesal.converters.cleanup``: a Transpose pair cancels across operators
that commute with it) and the generated docs table (docs/supported_ops.md). The table lives in
the graph layer, not next to the rules' code, so the converters can read it without importing
:mod:`edgesal.autodiff` (which would register every gradient rule); each block mirrors one rule
module (``edgesal/autodiff/rules/<family>.py``).

An operator without a gradient rule may be declared too (Gelu, Mish, Max: known to be pointwise
for receptive fields and cleanup, differentiated after expansion or not at all).
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Traits:
    """Properties of one operator type that passes other than its gradient rule rely on.

    - ``pointwise``: each output element reads the inputs only at its own (broadcast) position,
      so the op is spatially local with a 1x1 window (the inputs other than the first may be
      per-channel constants: BatchNormalization, PRelu's slope).
    - ``commutes_with_transpose``: f(Transpose(x, p)) == Transpose(f(x), p) exactly, for the
      first input when every other input is a constant scalar (unary elementwise operators).
    - ``zero``: the derivative is zero almost everywhere (comparisons, rounding, indices).
    - ``guided``: the gradient rule has a guided-backpropagation variant (ReLU-like gates).
    """

    pointwise: bool = False
    commutes_with_transpose: bool = False
    zero: bool = False
    guided: bool = False

    def labels(self) -> list[str]:
        """The set traits in words, in declaration order (for the docs table)."""
        return [LABELS[f.name] for f in fields(self) if getattr(self, f.name)]


LABELS = {
    "pointwise": "pointwise",
    "commutes_with_transpose": "commutes with Transpose",
    "zero": "zero derivative",
    "guided": "guided variant",
}


TRAITS: dict[str, Traits] = {}


def declare(*op_types: str, **traits: bool) -> None:
    """Declare ``traits`` (see :class:`Traits`) for each of ``op_types``, once per operator."""
    value = Traits(**traits)
    for op_type in op_types:
        if op_type in TRAITS:
            raise RuntimeError(f"traits of {op_type} declared twice")
        TRAITS[op_type] = value


def traits(op_type: str) -> Traits:
    """The declared traits of ``op_type``; all False for an undeclared operator."""
    return TRAITS.get(op_type, Traits())


def with_trait(name: str) -> frozenset[str]:
    """Operator types whose trait ``name`` (a :class:`Traits` field) is set."""
    if name not in {f.name for f in fields(Traits)}:
        raise KeyError(f"unknown operator trait '{name}'")
    return frozenset(op for op, t in TRAITS.items() if getattr(t, name))


POINT = {"pointwise": True}
UNARY = {"pointwise": True, "commutes_with_transpose": True}

# activation: ReLU-like gates (guided variant), other unary functions, zero-derivative ops
declare("Relu", "Clip", "LeakyRelu", "HardSwish", **UNARY, guided=True)
declare("PRelu", pointwise=True, guided=True)
declare("HardSigmoid", "Sigmoid", "Tanh", "Elu", "Selu", "Softplus", "Exp", "Log", **UNARY)
declare("Sqrt", "Abs", "Reciprocal", "Erf", **UNARY)
declare("Softmax", "LogSoftmax")
declare("Pow", pointwise=True)
declare("Sign", "Floor", "Ceil", "Round", "Not", **UNARY, zero=True)
declare(
    "Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "And", "Or", **POINT, zero=True
)
declare("ArgMax", "ArgMin", "Shape", "Size", zero=True)
# no rule (expanded before differentiating, or not differentiated): known pointwise
declare("Celu", "Softsign", "Gelu", "Mish", **UNARY)
declare("Max", "Min", "Mean", pointwise=True)
# elementwise
declare("Neg", "Identity", "Cast", **UNARY)
declare("Add", "Sub", "Mul", "Div", "Sum", pointwise=True)
declare("Dropout")
# normalization
declare("BatchNormalization", pointwise=True)
declare("InstanceNormalization", "LayerNormalization")
# conv, linear, pooling, reduction, resize, shape: windowed or global, described by their rules
declare("Conv", "ConvTranspose", "Gemm", "MatMul")
declare("AveragePool", "MaxPool", "LpPool", "GlobalAveragePool", "GlobalMaxPool")
declare("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean")
declare("ReduceMin", "ReduceSum", "ReduceSumSquare", "Resize")
declare("Concat", "Expand", "Flatten", "Gather", "Pad", "Reshape", "Slice", "Split", "Squeeze")
declare("Tile", "Transpose", "Unsqueeze")
