"""Activation, normalization and linear rules where finite differences cannot judge them.

- Kinks: inputs sitting exactly on a non-smooth point, float32 on onnxruntime, against
  torch.autograd (Relu'(0) = 0, Clip 0 at both bounds, LeakyRelu/PRelu slope at 0, HardSwish
  0 at -3 and 1 at 3, HardSigmoid 0 at its bounds, Abs'(0) = 0, Elu/Selu at 0).
- Guided backpropagation: single activations and a Relu/Clip/LeakyRelu chain against a numpy
  reference of Springenberg et al.'s rule.
- Zero rules: every operator registered with register_zero, placed in a graph where its input
  lies on the gradient path, must cut the gradient without failing the engine.
- Erf against torch in float64 (onnx.reference computes Erf in float32), and the errors for
  inputs the rules do not differentiate.
"""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from edgesal.autodiff.engine import input_gradient
from edgesal.autodiff.registry import RULES
from edgesal.errors import InputError
from edgesal.graph.builder import Builder
from edgesal.graph.info import TensorInfo
from tests.gradcheck import Case, build_gradient

F32 = np.float32


def _ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _torch_grads(fn, inputs: dict[str, np.ndarray], dy: np.ndarray) -> dict[str, np.ndarray]:
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in inputs.items()}
    fn(*tensors.values()).backward(torch.tensor(dy))
    return {k: t.grad.numpy() for k, t in tensors.items()}


# --- kinks ----------------------------------------------------------------------------------


def _points(*kinks: float) -> np.ndarray:
    """Each kink, its float32 neighbours and points 1e-3 and 1 away, plus a few ordinary values."""
    values = [-7.0, -0.5, 0.25, 2.0, 7.0]
    for k in kinks:
        k = F32(k)
        values += [k, np.nextafter(k, F32(-np.inf)), np.nextafter(k, F32(np.inf))]
        values += [k - 1e-3, k + 1e-3, k - 1, k + 1]
    return np.asarray(values, dtype=F32).reshape(1, -1)


SLOPE = np.asarray([0.25], dtype=F32)
KINKS = {  # id: (op, attrs, extra ONNX inputs, kinks, torch function of x)
    "Relu": ("Relu", {}, {}, (0,), F.relu),
    "Clip-relu6": ("Clip", {}, {"lo": 0.0, "hi": 6.0}, (0, 6), F.relu6),
    "Clip-hardtanh": ("Clip", {}, {"lo": -1.0, "hi": 1.0}, (-1, 1), F.hardtanh),
    "Clip-min-only": ("Clip", {}, {"lo": 0.0}, (0,), F.relu),
    "LeakyRelu": ("LeakyRelu", {"alpha": 0.1}, {}, (0,), lambda x: F.leaky_relu(x, 0.1)),
    "PRelu": ("PRelu", {}, {"slope": SLOPE}, (0,), lambda x: F.prelu(x, torch.tensor(SLOPE))),
    "HardSwish": ("HardSwish", {}, {}, (-3, 0, 3), F.hardswish),
    "HardSigmoid": (
        "HardSigmoid",
        {"alpha": 1 / 6, "beta": 0.5},
        {},
        (-3, 3),
        F.hardsigmoid,
    ),
    "Abs": ("Abs", {}, {}, (0,), torch.abs),
    "Elu": ("Elu", {"alpha": 0.5}, {}, (0,), lambda x: F.elu(x, 0.5)),
    "Selu": ("Selu", {}, {}, (0,), F.selu),
}


@pytest.mark.parametrize("name", sorted(KINKS))
def test_gradient_at_kinks_matches_torch(name):
    op, attrs, extra, kinks, torch_fn = KINKS[name]
    x = _points(*kinks)
    dy = np.random.default_rng(0).standard_normal(x.shape).astype(F32)
    constants = {k: np.asarray(v, dtype=F32) for k, v in extra.items()}
    case = Case(op, {"x": x, **constants}, attrs=attrs, constants=tuple(constants))
    ours = _ort(build_gradient(case, "x", [dy], dtype=F32), {"x": x})[-1]
    expected = _torch_grads(torch_fn, {"x": x}, dy)["x"]
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-7, err_msg=f"x = {x}")


def test_prelu_slope_gradient_at_zero_matches_torch():
    x = _points(0)
    slope = np.asarray([0.25], dtype=F32)
    dy = np.random.default_rng(1).standard_normal(x.shape).astype(F32)
    case = Case("PRelu", {"x": x, "slope": slope}, wrt=("x", "slope"))
    ours = _ort(build_gradient(case, "slope", [dy], dtype=F32), {"x": x, "slope": slope})[-1]
    expected = _torch_grads(F.prelu, {"x": x, "slope": slope}, dy)["slope"]
    np.testing.assert_allclose(ours, expected, rtol=1e-5)


# --- guided backpropagation -----------------------------------------------------------------


def _guided_reference(op: str, x: np.ndarray, dy: np.ndarray, **p) -> np.ndarray:
    """Springenberg et al.: max(dy, 0) * f'(x) * [x > 0], f' being 1 where f is the identity."""
    gate = np.maximum(dy, 0) * (x > 0)
    if op == "Clip":
        return gate * (x > p["lo"]) * (x < p["hi"])
    if op == "HardSwish":
        return gate * np.where(x < 3, x / 3 + 0.5, 1.0)
    return gate


GUIDED = {  # id: (op, attrs, extra inputs: constants, or graph inputs when the id ends in -fed)
    "Relu": ("Relu", {}, {}),
    "Clip-relu6": ("Clip", {}, {"lo": 0.0, "hi": 6.0}),
    "Clip-hardtanh": ("Clip", {}, {"lo": -1.0, "hi": 1.0}),
    "Clip-hardtanh-fed": ("Clip", {}, {"lo": -1.0, "hi": 1.0}),
    "Clip-positive-min": ("Clip", {}, {"lo": 0.5, "hi": 2.0}),
    "LeakyRelu": ("LeakyRelu", {"alpha": 0.2}, {}),
    "LeakyRelu-negative-alpha": ("LeakyRelu", {"alpha": -0.3}, {}),
    "PRelu": ("PRelu", {}, {"slope": np.asarray([[0.1], [-0.2], [0.3]])}),
    "HardSwish": ("HardSwish", {}, {}),
}


@pytest.mark.parametrize("name", sorted(GUIDED))
def test_guided_single_activation(name):
    op, attrs, extra = GUIDED[name]
    rng = np.random.default_rng(2)
    x = 4 * rng.standard_normal((2, 3, 5))
    dy = rng.standard_normal(x.shape)
    extra = {k: np.asarray(v, dtype=np.float64) for k, v in extra.items()}
    fed = extra if name.endswith("-fed") else {}
    case = Case(op, {"x": x, **extra}, attrs=attrs, constants=tuple(set(extra) - set(fed)))
    model = build_gradient(case, "x", [dy], mode="guided")
    ours = ReferenceEvaluator(model).run(None, {"x": x, **fed})[-1]
    bounds = {k: float(v) for k, v in extra.items() if k in ("lo", "hi")}
    np.testing.assert_allclose(ours, _guided_reference(op, x, dy, **bounds), atol=1e-12)
    model32 = build_gradient(case, "x", [dy], dtype=F32, mode="guided")
    feeds32 = {k: v.astype(F32) for k, v in {"x": x, **fed}.items()}
    np.testing.assert_allclose(_ort(model32, feeds32)[-1], ours, atol=1e-5)


def _chain_model(weights: list[np.ndarray]) -> onnx.ModelProto:
    """x -> MatMul W1 -> Relu -> MatMul W2 -> Clip(0, 6) -> MatMul W3 -> LeakyRelu -> out."""
    nodes = [
        helper.make_node("MatMul", ["x", "w0"], ["h0"]),
        helper.make_node("Relu", ["h0"], ["a0"]),
        helper.make_node("MatMul", ["a0", "w1"], ["h1"]),
        helper.make_node("Clip", ["h1", "lo", "hi"], ["a1"]),
        helper.make_node("MatMul", ["a1", "w2"], ["h2"]),
        helper.make_node("LeakyRelu", ["h2"], ["out"], alpha=0.1),
    ]
    inits = {f"w{i}": w for i, w in enumerate(weights)} | {"lo": 0.0, "hi": 6.0}
    return _model(nodes, {"x": [4, weights[0].shape[0]]}, ["out"], inits)


def _model(nodes: list, inputs: dict, outputs: list[str], inits: dict) -> onnx.ModelProto:
    """A float64 opset-17 model; output types come from shape inference."""
    graph = helper.make_graph(
        nodes,
        "test",
        [helper.make_tensor_value_info(k, onnx.TensorProto.DOUBLE, v) for k, v in inputs.items()],
        [],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    by_name = {vi.name: vi for vi in inferred.graph.value_info}
    model.graph.output.extend(by_name[name] for name in outputs)
    return model


def _with_gradient(model: onnx.ModelProto, seeds: dict, wrt: str, mode: str) -> onnx.ModelProto:
    """The model plus one more output: the gradient of sum <seed, output> w.r.t. ``wrt``."""
    info = TensorInfo(model)
    b = Builder(model.graph, 17)
    names = {out: b.const(value, hint="seed") for out, value in seeds.items()}
    grad = input_gradient(model.graph, info, b, names, wrt, mode=mode)
    shape = info.shape(wrt)
    model.graph.output.append(helper.make_tensor_value_info(grad, onnx.TensorProto.DOUBLE, shape))
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.mark.parametrize("mode", ["vanilla", "guided"])
def test_relu_clip_chain(mode):
    """The chain's gradient, by hand in numpy: exact, or guided at every activation."""
    rng = np.random.default_rng(3)
    weights = [rng.standard_normal(s) * 1.5 for s in ((6, 8), (8, 8), (8, 5))]
    x = rng.standard_normal((4, 6))
    h0 = x @ weights[0]
    a0 = np.maximum(h0, 0)
    h1 = a0 @ weights[1]
    a1 = np.clip(h1, 0, 6)
    h2 = a1 @ weights[2]
    dy = rng.standard_normal(h2.shape)
    assert (h1 > 6).any() and (h1 < 0).any(), "the chain must exercise both Clip bounds"

    if mode == "guided":
        g = np.maximum(dy, 0) * (h2 > 0)
        g = np.maximum(g @ weights[2].T, 0) * (h1 > 0) * (h1 < 6)
        g = np.maximum(g @ weights[1].T, 0) * (h0 > 0)
    else:
        g = dy * np.where(h2 > 0, 1.0, float(np.float32(0.1)))  # ONNX float attribute
        g = (g @ weights[2].T) * (h1 > 0) * (h1 < 6)
        g = (g @ weights[1].T) * (h0 > 0)
    expected = g @ weights[0].T

    model = _with_gradient(_chain_model(weights), {"out": dy}, "x", mode)
    out, grad = ReferenceEvaluator(model).run(None, {"x": x})
    np.testing.assert_allclose(out, np.where(h2 > 0, h2, float(np.float32(0.1)) * h2), rtol=1e-12)
    np.testing.assert_allclose(grad, expected, rtol=1e-10, atol=1e-12)


def test_unknown_mode_names_the_node():
    case = Case("Relu", {"x": np.ones((2, 2))})
    with pytest.raises(InputError, match=r"unknown gradient mode 'deconvnet' at Relu node"):
        build_gradient(case, "x", [np.ones((2, 2))], mode="deconvnet")


# --- zero rules -----------------------------------------------------------------------------


def _cast(node_out: str) -> list:
    return [helper.make_node("Cast", [node_out], ["s"], to=onnx.TensorProto.DOUBLE)]


def _compare(op: str) -> list:
    return [helper.make_node(op, ["x", "z"], ["c"]), *_cast("c")]


def _logic(op: str) -> list:
    """s = [x > 0] + [x < 1] + op(x > 0, x < 1): the bools are on the path through the Casts."""
    return [
        helper.make_node("Greater", ["x", "zero"], ["p"]),
        helper.make_node("Less", ["x", "one"], ["q"]),
        helper.make_node(op, ["p", "q"] if op != "Not" else ["p"], ["r"]),
        *[helper.make_node("Cast", [t], [f"{t}f"], to=onnx.TensorProto.DOUBLE) for t in "pqr"],
        helper.make_node("Sum", ["pf", "qf", "rf"], ["s"]),
    ]


ZERO_GRAPHS = {  # op: nodes computing a factor s (broadcastable to x) that passes through op
    "Sign": [helper.make_node("Sign", ["x"], ["s"])],
    "Floor": [helper.make_node("Floor", ["x"], ["s"])],
    "Ceil": [helper.make_node("Ceil", ["x"], ["s"])],
    "Round": [helper.make_node("Round", ["x"], ["s"])],
    **{op: _compare(op) for op in ("Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual")},
    **{op: _logic(op) for op in ("Not", "And", "Or")},
    "ArgMax": [helper.make_node("ArgMax", ["x"], ["i"], axis=0), *_cast("i")],
    "ArgMin": [helper.make_node("ArgMin", ["x"], ["i"], axis=1), *_cast("i")],
    "Shape": [helper.make_node("Shape", ["x"], ["n"]), *_cast("n")],
    "Size": [helper.make_node("Size", ["x"], ["n"]), *_cast("n")],
}


def _zero_rule_ops() -> list[str]:
    return sorted(op for op, rule in RULES.items() if rule.zero)


def test_every_zero_rule_has_a_graph():
    assert sorted(ZERO_GRAPHS) == _zero_rule_ops()


@pytest.mark.parametrize("op", sorted(ZERO_GRAPHS))
def test_zero_rule_cuts_the_gradient(op):
    """out = x * x * s(x) with s piecewise constant: d<c, out>/dx = 2 x s c."""
    rng = np.random.default_rng(4)
    x = rng.choice([-1.5, -1.0, -0.5, 0.5, 1.0, 1.5], size=(3, 2)) + rng.uniform(-0.2, 0.2, (3, 2))
    x[0, 0] = 1.0  # so that Equal sees a match
    consts = {"z": np.asarray([1.0, 0.7]), "zero": np.asarray(0.0), "one": np.asarray(1.0)}
    nodes = [
        *ZERO_GRAPHS[op],
        helper.make_node("Mul", ["x", "x"], ["sq"]),
        helper.make_node("Mul", ["sq", "s"], ["out"]),
    ]
    model = _model(nodes, {"x": [3, 2]}, ["out", "s"], consts)
    c = rng.standard_normal((3, 2))
    model = _with_gradient(model, {"out": c}, "x", "vanilla")
    _, s, grad = ReferenceEvaluator(model).run(None, {"x": x})
    np.testing.assert_allclose(grad, 2 * x * s * c, rtol=1e-12)


# --- Erf in float64 and the errors ----------------------------------------------------------


def test_erf_matches_torch_in_float64():
    rng = np.random.default_rng(5)
    x, dy = rng.standard_normal((2, 50)) * 2
    case = Case("Erf", {"x": x})
    ours = ReferenceEvaluator(build_gradient(case, "x", [dy])).run(None, {"x": x})[-1]
    np.testing.assert_allclose(ours, _torch_grads(torch.erf, {"x": x}, dy)["x"], rtol=1e-12)


def _batch_norm_case(**kwargs) -> Case:
    c = 3
    inputs = {"x": np.ones((1, c, 2, 2)), "scale": np.ones(c), "bias": np.zeros(c)}
    inputs |= {"mean": np.zeros(c), "var": np.ones(c)}
    return Case("BatchNormalization", inputs, wrt=("x", "scale"), **kwargs)


def test_batch_norm_rejects_a_scale_on_the_gradient_path():
    case = _batch_norm_case()
    with pytest.raises(InputError, match=r"BatchNormalization node .*only X is differentiated"):
        build_gradient(case, "scale", [np.ones((1, 3, 2, 2))])


def test_batch_norm_rejects_training_mode():
    case = _batch_norm_case(attrs={"training_mode": 1}, n_outputs=3)
    cotangents = [np.ones((1, 3, 2, 2)), np.ones(3), np.ones(3)]
    with pytest.raises(InputError, match="training mode"):
        build_gradient(case, "x", cotangents)


def test_layer_norm_rejects_gradients_into_its_statistics():
    x = np.random.default_rng(6).standard_normal((2, 3))
    case = Case("LayerNormalization", {"x": x, "scale": np.ones(3)}, n_outputs=3, opset=17)
    with pytest.raises(InputError, match="Mean/InvStdDev"):
        build_gradient(case, "x", [np.ones((2, 3)), np.ones((2, 1)), np.ones((2, 1))], dtype=F32)


def test_softmax_before_opset_13_is_refused():
    case = Case("Softmax", {"x": np.ones((2, 3))}, opset=12)
    with pytest.raises(InputError, match="opset >= 13"):
        build_gradient(case, "x", [np.ones((2, 3))])
