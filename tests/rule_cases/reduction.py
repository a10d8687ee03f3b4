"""Cases for edgesal/autodiff/rules/reduction.py (max/min inputs are distinct: no ties)."""

import numpy as np

from tests.gradcheck import Case, cases
from tests.rule_cases.pooling import distinct

OPS = [
    "ReduceSum",
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceSumSquare",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
]
# Opsets where axes moved from the attribute to an input.
AXES_INPUT_SINCE = {"ReduceSum": 13}


def operand(op: str, rng: np.random.Generator, shape) -> np.ndarray:
    if op in ("ReduceMax", "ReduceMin"):
        return distinct(rng, shape)
    if op == "ReduceLogSum":
        return rng.uniform(0.5, 2.0, size=shape)
    return rng.standard_normal(shape)


def reduction_case(op, rng, shape, axes, keepdims, opset, noop=None, id_=""):
    x = operand(op, rng, shape)
    attrs = {"keepdims": keepdims}
    inputs = {"x": x}
    if opset >= AXES_INPUT_SINCE.get(op, 18):
        if axes is not None:
            inputs["axes"] = np.asarray(axes, dtype=np.int64)
        if noop is not None:
            attrs["noop_with_empty_axes"] = noop
    elif axes is not None:
        attrs["axes"] = axes
    return Case(op, inputs, attrs=attrs, opset=opset, id=id_)


@cases(*OPS)
def reductions(rng: np.random.Generator):
    for op in OPS:
        shape = tuple(int(v) for v in rng.integers(2, 5, size=4))
        for opset in (13, 18):
            for keepdims in (0, 1):
                yield reduction_case(
                    op, rng, shape, [1, -1], keepdims, opset, id_=f"o{opset}-k{keepdims}"
                )
            yield reduction_case(op, rng, shape, None, 0, opset, id_=f"o{opset}-all")
            yield reduction_case(op, rng, shape, [-3], 1, opset, id_=f"o{opset}-neg")
        yield reduction_case(op, rng, shape, [], 1, 18, noop=1, id_="noop")
        yield reduction_case(op, rng, shape, None, 1, 18, noop=0, id_="empty-all")
        yield reduction_case(op, rng, (5,), [0], 0, 18, id_="to-scalar")
