"""Pooling/shape/resize rules where the finite-difference harness cannot go, and their errors.

onnx.reference cannot run some valid configurations (negative Pad pads, Resize's float32 scales
input once the harness casts constants to double), so these are checked in float32 on
onnxruntime against torch.autograd. Outputs that receive no gradient and the errors raised for
unsupported attributes are checked here too.
"""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper

from edgesal.autodiff.engine import input_gradient
from edgesal.errors import EdgesalError
from edgesal.graph.builder import Builder
from edgesal.graph.info import TensorInfo
from tests.gradcheck import Case, build_forward, build_gradient


def ort_grad(case: Case, dy: np.ndarray) -> np.ndarray:
    """Gradient of <dy, op(x)> from the emitted graph, run in float32 on onnxruntime."""
    model = build_gradient(case, "x", [dy], dtype=np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {"x": case.inputs["x"].astype(np.float32)}
    return session.run(None, feeds)[-1].astype(np.float64)


def torch_grad(fn, x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    xt = torch.tensor(x, requires_grad=True)
    fn(xt).backward(torch.tensor(dy))
    return xt.grad.numpy()


def seeded_gradient(model: onnx.ModelProto, seeds: dict[str, np.ndarray], opset: int) -> str:
    """Append the gradient w.r.t. 'x' of sum <seed, output> over the given outputs only."""
    info = TensorInfo(model)
    b = Builder(model.graph, opset)
    names = {out: b.const(value.astype(np.float32), hint="seed") for out, value in seeds.items()}
    return input_gradient(model.graph, info, b, names, "x")


RESIZES = [  # ONNX attributes, torch interpolate kwargs, scale
    ({"mode": "linear"}, {"mode": "bilinear", "align_corners": False}, 1.7),
    ({"mode": "linear"}, {"mode": "bilinear", "align_corners": False}, 0.6),
    ({"mode": "linear"}, {"mode": "bilinear", "align_corners": False}, 2.0),
    ({"mode": "cubic"}, {"mode": "bicubic", "align_corners": False}, 1.6),
    (
        {
            "mode": "nearest",
            "coordinate_transformation_mode": "asymmetric",
            "nearest_mode": "floor",
        },
        {"mode": "nearest"},
        3.0,
    ),
    (
        {
            "mode": "nearest",
            "coordinate_transformation_mode": "half_pixel",
            "nearest_mode": "round_prefer_ceil",
        },
        {"mode": "nearest-exact"},
        2.0,
    ),
]


@pytest.mark.parametrize("attrs,torch_kwargs,scale", RESIZES)
def test_resize_scales_input_matches_torch(attrs, torch_kwargs, scale):
    rng = np.random.default_rng(int(scale * 10))
    x = rng.standard_normal((1, 2, 6, 7))
    case = Case(
        "Resize",
        {"x": x, "roi": None, "scales": np.asarray([1, 1, scale, scale])},
        attrs=attrs,
        constants=("scales",),
    )

    def fn(t):
        return F.interpolate(t, scale_factor=scale, recompute_scale_factor=False, **torch_kwargs)

    dy = rng.standard_normal(fn(torch.tensor(x)).shape)
    np.testing.assert_allclose(ort_grad(case, dy), torch_grad(fn, x, dy), atol=2e-5)


def test_resize_align_corners_sizes_matches_torch():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 5, 4))
    sizes = np.asarray([2, 3, 9, 11], dtype=np.int64)
    attrs = {"mode": "linear", "coordinate_transformation_mode": "align_corners"}
    case = Case("Resize", {"x": x, "roi": None, "scales": None, "sizes": sizes}, attrs=attrs)

    def fn(t):
        return F.interpolate(t, size=(9, 11), mode="bilinear", align_corners=True)

    dy = rng.standard_normal((2, 3, 9, 11))
    np.testing.assert_allclose(ort_grad(case, dy), torch_grad(fn, x, dy), atol=2e-5)


def test_negative_pads_crop_like_torch():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 2, 6, 7))
    pads = np.asarray([0, 0, -1, 2, 0, 0, 3, -2], dtype=np.int64)
    case = Case("Pad", {"x": x, "pads": pads})

    def fn(t):
        return F.pad(t, (2, -2, -1, 3))

    dy = rng.standard_normal(fn(torch.tensor(x)).shape)
    np.testing.assert_allclose(ort_grad(case, dy), torch_grad(fn, x, dy), atol=1e-6)


@pytest.mark.parametrize("seeded", [["y1"], ["y0", "y2"], ["y2"]])
def test_split_outputs_without_gradient_get_zeros(seeded):
    x = np.arange(2 * 9, dtype=np.float64).reshape(2, 9)
    case = Case("Split", {"x": x, "split": np.asarray([2, 3, 4])}, attrs={"axis": 1}, n_outputs=3)
    model = build_forward(case, np.float32)
    pieces = np.split(np.ones_like(x), [2, 5], axis=1)
    seeds = {f"y{i}": pieces[i] * (i + 1) for i in range(3) if f"y{i}" in seeded}
    grad = seeded_gradient(model, seeds, case.opset)
    model.graph.output.append(helper.make_tensor_value_info(grad, onnx.TensorProto.FLOAT, x.shape))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x.astype(np.float32)})[-1]
    expected = np.concatenate(
        [p * (i + 1) if f"y{i}" in seeded else 0 * p for i, p in enumerate(pieces)], axis=1
    )
    np.testing.assert_array_equal(got, expected)


def test_reduce_l2_of_zeros_passes_no_gradient():
    x = np.zeros((2, 3))
    x[1] = [3.0, -4.0, 0.0]
    case = Case("ReduceL2", {"x": x}, attrs={"axes": [1], "keepdims": 0})
    dy = np.asarray([1.0, 2.0])
    expected = torch_grad(lambda t: torch.linalg.vector_norm(t, dim=1), x, dy)
    np.testing.assert_allclose(ort_grad(case, dy), expected, atol=1e-6)


def model_with_runtime_input(node: onnx.NodeProto, inputs, initializers=(), opset=17):
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in initializers],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def gradient_error(model: onnx.ModelProto, opset: int = 17) -> str:
    out = model.graph.output[0].name
    with pytest.raises(EdgesalError) as err:
        info = TensorInfo(model)
        b = Builder(model.graph, opset)
        input_gradient(model.graph, info, b, {out: b.const(np.float32(1.0))}, "x")
    return str(err.value)


FLOAT, INT64 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT64


def test_gather_with_runtime_indices_is_refused_by_name():
    node = helper.make_node("Gather", ["x", "idx"], ["y"], name="pick_rows", axis=0)
    model = model_with_runtime_input(node, [("x", FLOAT, [4, 3]), ("idx", INT64, [2])])
    message = gradient_error(model)
    assert "Gather node 'pick_rows'" in message and "'idx'" in message


def test_pad_with_runtime_pads_is_refused_by_name():
    node = helper.make_node("Pad", ["x", "p"], ["y"], name="pad_it")
    model = model_with_runtime_input(node, [("x", FLOAT, [4, 3]), ("p", INT64, [4])])
    assert "Pad node 'pad_it'" in gradient_error(model)


def test_reflect_pad_wider_than_axis_is_refused():
    node = helper.make_node("Pad", ["x", "p"], ["y"], name="mirror", mode="reflect")
    pads = np.asarray([0, 4, 0, 0], dtype=np.int64)
    model = model_with_runtime_input(node, [("x", FLOAT, [2, 3])], [("p", pads)])
    assert "mirror" in gradient_error(model) and "mode='reflect'" in gradient_error(model)


def test_antialiased_downscale_is_refused_by_attribute():
    node = helper.make_node(
        "Resize", ["x", "", "s"], ["y"], name="shrink", mode="linear", antialias=1
    )
    scales = np.asarray([1, 1, 0.5, 0.5], dtype=np.float32)
    model = model_with_runtime_input(node, [("x", FLOAT, [1, 1, 8, 8])], [("s", scales)], 18)
    message = gradient_error(model, 18)
    assert "Resize node 'shrink'" in message and "antialias=1" in message


def test_resize_with_runtime_scales_is_refused():
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], name="grow", mode="nearest")
    model = model_with_runtime_input(node, [("x", FLOAT, [1, 1, 4, 4]), ("s", FLOAT, [4])])
    message = gradient_error(model)
    assert "Resize node 'grow'" in message and "scales" in message


def test_ceil_mode_window_in_padding_is_refused():
    """Runtimes drop such a window; ONNX shape inference keeps it, so the graph would lie."""
    node = helper.make_node(
        "MaxPool",
        ["x"],
        ["y"],
        name="pool",
        kernel_shape=[2, 2],
        strides=[2, 2],
        pads=[1, 1, 1, 1],
        ceil_mode=1,
    )
    model = model_with_runtime_input(node, [("x", FLOAT, [1, 1, 5, 5])])
    message = gradient_error(model)
    assert "MaxPool node 'pool'" in message and "ceil_mode" in message
