"""Composite rules (one VJP for a multi-node subgraph, :data:`COMPOSITES`): every registered
composite has forms here, each checked against central finite differences in float64 and against
torch, and shown to have been used; near misses are left to the per-operator rules."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from onnx.reference.ops._op import OpRunUnaryNum

from edgesal.autodiff.engine import input_gradient
from edgesal.autodiff.registry import COMPOSITES
from edgesal.graph.builder import Builder
from edgesal.graph.info import TensorInfo

SHAPE = (2, 3, 5)


def _gelu(form: str, root2: float = math.sqrt(2.0), half: float = 0.5) -> list[onnx.NodeProto]:
    """x -> y by one of the spellings exporters write; constants are initializers c_*."""
    scaled = (
        helper.make_node("Mul", ["x", "c_inv_root2"], ["s"])
        if form == "mul-scale"
        else helper.make_node("Div", ["x", "c_root2"], ["s"])
    )
    added = ["c_one", "e"] if form == "hf" else ["e", "c_one"]
    head = [scaled, helper.make_node("Erf", ["s"], ["e"]), helper.make_node("Add", added, ["a"])]
    tails = {
        "torch": [("Mul", ["x", "a"], "p"), ("Mul", ["p", "c_half"], "y")],
        "mul-scale": [("Mul", ["a", "x"], "p"), ("Mul", ["c_half", "p"], "y")],
        "hf": [("Mul", ["x", "c_half"], "m"), ("Mul", ["m", "a"], "y")],
        "half-on-a": [("Mul", ["a", "c_half"], "h"), ("Mul", ["x", "h"], "y")],
    }
    return head + [helper.make_node(op, ins, [out]) for op, ins, out in tails[form]]


def _model(nodes, dtype=np.float64, **constants) -> onnx.ModelProto:
    """x -> GELU -> z = y * w (w fixed, so the cotangent is not uniform)."""
    values = {"c_root2": math.sqrt(2.0), "c_inv_root2": 1 / math.sqrt(2.0), "c_one": 1.0,
              "c_half": 0.5, **constants}  # fmt: skip
    inits = [numpy_helper.from_array(np.asarray(v, dtype), k) for k, v in values.items()]
    w = np.random.default_rng(1).standard_normal(SHAPE).astype(dtype)
    inits.append(numpy_helper.from_array(w, "w"))
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    graph = helper.make_graph(
        [*nodes, helper.make_node("Mul", ["y", "w"], ["z"])], "gelu",
        [helper.make_tensor_value_info("x", elem, SHAPE)],
        [helper.make_tensor_value_info("z", elem, SHAPE)], inits,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _with_gradient(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """The model plus output dx = d(sum z)/dx; also the names of the emitted nodes."""
    info = TensorInfo(model)
    b = Builder(model.graph, 17, prefix="g")
    elem = model.graph.input[0].type.tensor_type.elem_type
    ones = b.const(np.ones(SHAPE, helper.tensor_dtype_to_np_dtype(elem)))
    mark = len(model.graph.node)
    grad = input_gradient(model.graph, info, b, {"z": ones}, "x")
    emitted = [n.name for n in model.graph.node[mark:]]
    model.graph.node.append(helper.make_node("Identity", [grad], ["dx"]))
    model.graph.output.append(helper.make_tensor_value_info("dx", elem, SHAPE))
    return model, emitted


class _Erf64(OpRunUnaryNum):
    """Erf in float64: onnx.reference's own evaluates it in float32 even for float64 inputs,
    which makes finite differences noise (tests/rule_cases/activation.py)."""

    op_domain = ""

    def _run(self, x):
        return (np.vectorize(math.erf, otypes=[np.float64])(x).astype(x.dtype),)


def _reference(model: onnx.ModelProto) -> ReferenceEvaluator:
    return ReferenceEvaluator(model, new_ops=[type("Erf", (_Erf64,), {})])


def _finite_differences(model: onnx.ModelProto, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    run = _reference(model)
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[i] = eps
        plus, minus = (run.run(["z"], {"x": x + d})[0].sum() for d in (step, -step))
        grad[i] = (plus - minus) / (2 * eps)
    return grad


def test_every_composite_has_cases_here():
    assert set(COMPOSITES) == {"gelu"}


@pytest.mark.parametrize("form", ["torch", "mul-scale", "hf", "half-on-a"])
def test_gelu_forms_match_finite_differences_and_torch(form):
    x = np.random.default_rng(0).standard_normal(SHAPE) * 2
    model, emitted = _with_gradient(_model(_gelu(form)))
    assert any("/gelu/" in name for name in emitted), "the composite was not used"
    assert len(emitted) == 7 + 1  # seven passes; the last Mul(dy, w) is the rule of z = y * w
    (dx,) = _reference(model).run(["dx"], {"x": x})
    expected = _finite_differences(_model(_gelu(form)), x)
    np.testing.assert_allclose(dx, expected, rtol=1e-7, atol=1e-9)
    t = torch.tensor(x, requires_grad=True)
    w = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "w"))
    (torch.nn.functional.gelu(t) * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(dx, t.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_gelu_float32_on_onnxruntime():
    import onnxruntime as ort

    x = (np.random.default_rng(2).standard_normal(SHAPE) * 3).astype(np.float32)
    model, _ = _with_gradient(_model(_gelu("torch"), dtype=np.float32))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (dx,) = session.run(["dx"], {"x": x})
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    w = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "w"))
    (torch.nn.functional.gelu(t) * torch.tensor(w, dtype=torch.float64)).sum().backward()
    np.testing.assert_allclose(dx, t.grad.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("constants", [{"c_half": 0.6}, {"c_root2": 1.5}, {"c_one": 2.0}])
def test_near_misses_take_the_per_operator_rules(constants):
    """Another constant is another function: no composite, and the gradient is still exact."""
    x = np.random.default_rng(3).standard_normal(SHAPE)
    model, emitted = _with_gradient(_model(_gelu("torch"), **constants))
    assert not any("/gelu/" in name for name in emitted)
    (dx,) = _reference(model).run(["dx"], {"x": x})
    expected = _finite_differences(_model(_gelu("torch"), **constants), x)
    np.testing.assert_allclose(dx, expected, rtol=1e-7, atol=1e-9)


def test_interior_tensor_used_elsewhere_keeps_its_own_gradient():
    """erf(s) also feeds the output: that path runs through the per-operator rules, the GELU path
    through the composite, and the sum is exact."""
    nodes = [*_gelu("torch"), helper.make_node("Add", ["y", "e"], ["y2"])]
    nodes[-2].output[0] = "y0"
    nodes[-1].input[0] = "y0"
    nodes[-1].output[0] = "y"
    x = np.random.default_rng(4).standard_normal(SHAPE)
    model, emitted = _with_gradient(_model(nodes))
    assert any("/gelu/" in name for name in emitted)
    (dx,) = _reference(model).run(["dx"], {"x": x})
    np.testing.assert_allclose(dx, _finite_differences(_model(nodes), x), rtol=1e-7, atol=1e-9)
