"""Gradient checks for single ONNX operators against central finite differences in float64.

A rule is checked by <t, vjp(c)> == (<c, f(x + eps t)> - <c, f(x - eps t)>) / (2 eps) along random
directions t, with the forward and the emitted backward graph both evaluated by ONNX's reference
evaluator (an implementation independent of onnxruntime). The same gradient graph, cast to
float32, must also run on onnxruntime and agree with the float64 result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from edgesal.autodiff.engine import input_gradient
from edgesal.graph.builder import Builder
from edgesal.graph.info import TensorInfo

OPSET = 17


@dataclass
class Case:
    """One operator instance: inputs (arrays, or ``None`` for an omitted optional input)."""

    op_type: str
    inputs: dict[str, np.ndarray | None]
    attrs: dict = field(default_factory=dict)
    wrt: tuple[str, ...] = ("x",)
    constants: tuple[str, ...] = ()
    n_outputs: int = 1
    opset: int = OPSET
    tol: float = 1e-5
    id: str = ""

    def label(self) -> str:
        return f"{self.op_type}-{self.id}" if self.id else self.op_type


CASES: dict[str, list[Callable[[np.random.Generator], Iterable[Case]]]] = {}


def cases(*op_types: str):
    """Decorator: register a generator of test cases for ``op_types``."""

    def wrap(fn):
        for op_type in op_types:
            CASES.setdefault(op_type, []).append(fn)
        return fn

    return wrap


def build_forward(case: Case, dtype=np.float64) -> onnx.ModelProto:
    """A one-node model: differentiable inputs are graph inputs, ``constants`` initializers."""
    graph_inputs, initializers, names = [], [], []
    for name, value in case.inputs.items():
        if value is None:
            names.append("")
            continue
        names.append(name)
        array = value.astype(dtype) if value.dtype.kind == "f" else value
        if name in case.constants or array.dtype.kind != "f":
            initializers.append(numpy_helper.from_array(array, name))
        else:
            elem = helper.np_dtype_to_tensor_dtype(array.dtype)
            graph_inputs.append(helper.make_tensor_value_info(name, elem, array.shape))
    outs = [f"y{i}" for i in range(case.n_outputs)]
    node = helper.make_node(case.op_type, names, outs, name="node_under_test", **case.attrs)
    graph = helper.make_graph([node], "case", graph_inputs, [], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", case.opset)])
    model.ir_version = 8
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    by_name = {vi.name: vi for vi in inferred.graph.value_info}
    model.graph.output.extend(by_name[o] for o in outs)
    return model


def build_gradient(
    case: Case, wrt: str, cotangents: list[np.ndarray], dtype=np.float64, mode: str = "vanilla"
) -> onnx.ModelProto:
    """Forward model plus an output ``grad`` = vjp of the cotangents w.r.t. input ``wrt``."""
    model = build_forward(case, dtype)
    info = TensorInfo(model)
    b = Builder(model.graph, case.opset)
    seeds = {f"y{i}": b.const(c.astype(dtype), hint="cotangent") for i, c in enumerate(cotangents)}
    grad = input_gradient(model.graph, info, b, seeds, wrt, mode=mode)
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    model.graph.output.append(helper.make_tensor_value_info(grad, elem, info.shape(wrt)))
    onnx.checker.check_model(model, full_check=True)
    return model


def _feeds(case: Case, dtype) -> dict[str, np.ndarray]:
    return {
        k: np.asarray(v, dtype=dtype)
        for k, v in case.inputs.items()
        if v is not None and v.dtype.kind == "f" and k not in case.constants
    }


def run_reference(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ReferenceEvaluator(model).run(None, feeds)


def check_case(case: Case, seed: int = 0, directions: int = 3) -> None:
    """Assert the rule's VJP matches finite differences, and onnxruntime runs it in float32."""
    rng = np.random.default_rng(seed)
    forward = build_forward(case)
    feeds = _feeds(case, np.float64)
    outs = run_reference(forward, feeds)
    cotangents = [rng.standard_normal(o.shape) for o in outs]
    for wrt in case.wrt:
        model = build_gradient(case, wrt, cotangents)
        grad = run_reference(model, feeds)[-1]
        assert grad.shape == feeds[wrt].shape, (case.label(), wrt, grad.shape)
        for _ in range(directions):
            t = rng.standard_normal(feeds[wrt].shape)
            numeric = _directional_derivative(forward, feeds, wrt, t, cotangents)
            analytic = float(np.sum(t * grad))
            scale = max(1.0, abs(numeric), float(np.abs(grad).sum()) * 1e-3)
            assert abs(numeric - analytic) <= case.tol * scale, (
                f"{case.label()} d/d{wrt}: finite difference {numeric!r} vs rule {analytic!r}"
            )
        _check_onnxruntime_float32(case, wrt, cotangents, feeds, grad)


def _directional_derivative(forward, feeds, wrt, t, cotangents, eps: float = 1e-6) -> float:
    def objective(sign: float) -> float:
        shifted = dict(feeds, **{wrt: feeds[wrt] + sign * eps * t})
        return sum(
            float(np.sum(c * o))
            for c, o in zip(cotangents, run_reference(forward, shifted), strict=True)
        )

    return (objective(1.0) - objective(-1.0)) / (2 * eps)


def _check_onnxruntime_float32(case, wrt, cotangents, feeds64, grad64) -> None:
    model = build_gradient(case, wrt, cotangents, dtype=np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {k: v.astype(np.float32) for k, v in feeds64.items()}
    grad = session.run(None, feeds)[-1]
    scale = float(np.abs(grad64).max()) + 1e-6
    err = float(np.abs(grad - grad64).max()) / scale
    assert err < 1e-3, f"{case.label()} d/d{wrt}: onnxruntime float32 differs by {err:.2e}"
