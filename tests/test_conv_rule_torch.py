"""Conv/ConvTranspose gradients on onnxruntime (float32) against torch.autograd (float64).

Every emission strategy is run on every configuration it applies to, including those the
finite-difference harness cannot check (onnx.reference mis-evaluates grouped ConvTranspose with
more than one output channel per group, and output_shape below the natural size). The forward
outputs are compared too, which pins this file's reading of pads, auto_pad and output_shape to
onnxruntime's.
"""

from __future__ import annotations

import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

import edgesal.autodiff.rules.conv as conv_rules
from edgesal.autodiff.engine import input_gradient
from edgesal.errors import InputError
from edgesal.graph.builder import Builder
from edgesal.graph.info import TensorInfo

CONV = [  # x shape, w shape, attributes
    ((1, 4, 9, 8), (6, 2, 3, 3), {"group": 2, "strides": [2, 2], "pads": [1, 0, 0, 1]}),
    ((1, 2, 9, 8), (4, 1, 3, 3), {"group": 2, "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((2, 3, 12, 11), (3, 1, 3, 3), {"group": 3, "strides": [2, 2], "pads": [0, 0, 1, 1]}),
    ((1, 3, 13, 13), (3, 1, 5, 5), {"group": 3, "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((1, 3, 10, 9), (8, 3, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    ((1, 4, 8, 9), (4, 2, 3, 2), {"group": 2, "dilations": [2, 1], "pads": [3, 0, 0, 2]}),
    ((1, 5, 7), (5, 1, 3), {"group": 5, "strides": [3], "dilations": [2], "pads": [2, 1]}),
    ((1, 2, 5, 6, 4), (4, 2, 3, 3, 2), {"strides": [1, 2, 2], "pads": [1, 1, 0, 1, 0, 1]}),
    ((1, 4, 7, 7), (4, 4, 1, 1), {"strides": [2, 2]}),
    ((1, 6, 8, 8), (6, 1, 3, 3), {"group": 6, "pads": [1, 1, 1, 1]}),
]
CONV_TRANSPOSE = [
    ((1, 4, 4, 5), (4, 3, 3, 3), {"group": 2, "strides": [2, 2], "pads": [1, 0, 0, 1]}),
    ((1, 4, 3, 3), (4, 1, 3, 3), {"group": 2, "strides": [2, 1], "output_padding": [1, 0]}),
    ((1, 2, 4, 4), (2, 3, 3, 3), {"strides": [2, 2], "output_shape": [8, 7]}),
    ((1, 2, 4, 4), (2, 3, 3, 3), {"strides": [2, 2], "output_shape": [10, 10]}),
    ((1, 2, 4), (2, 1, 3), {"strides": [2], "auto_pad": "VALID", "output_shape": [8]}),
    ((1, 2, 3, 4), (2, 2, 4, 3), {"strides": [3, 2], "auto_pad": "SAME_UPPER"}),
    ((1, 2, 5), (2, 3, 3), {"strides": [2], "dilations": [3], "auto_pad": "SAME_LOWER"}),
]


def _strategies():
    for x_shape, w_shape, attrs in CONV:
        strided = any(s > 1 for s in attrs.get("strides", []))
        for strategy in conv_rules.STRATEGIES:
            if not (strategy == "flip" and strided):
                yield pytest.param(x_shape, w_shape, attrs, strategy, id=f"{strategy}-{attrs}")


def _model(op: str, x_shape, w: np.ndarray, attrs: dict, opset: int = 17) -> onnx.ModelProto:
    """op(x, w) -> y, plus an input dy and an output dx = vjp(dy) built by the engine."""
    node = helper.make_node(op, ["x", "w"], ["y"], name="conv_node", **attrs)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)
    graph = helper.make_graph([node], "conv", [x], [], [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    y_shape = onnx.shape_inference.infer_shapes(model).graph.value_info[0]
    model.graph.output.append(y_shape)
    model.graph.input.append(helper.make_value_info("dy", y_shape.type))
    info = TensorInfo(model)
    dx = input_gradient(model.graph, info, Builder(model.graph, opset), {"y": "dy"}, "x")
    model.graph.output.append(helper.make_tensor_value_info(dx, TensorProto.FLOAT, x_shape))
    onnx.checker.check_model(model, full_check=True)
    return model


def _run_ort(model: onnx.ModelProto, x: np.ndarray, dy: np.ndarray) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x, "dy": dy})


def _same_total(size, stride, span):
    return max(0, (-(-size // stride) - 1) * stride + span - size)


def _conv_pads(x_shape, w_shape, attrs) -> list[tuple[int, int]]:
    """(begin, end) pads per axis, from the ONNX spec's auto_pad formulas."""
    nd = len(x_shape) - 2
    strides = attrs.get("strides", [1] * nd)
    dilations = attrs.get("dilations", [1] * nd)
    mode = attrs.get("auto_pad", "NOTSET")
    if mode == "NOTSET":
        pads = attrs.get("pads", [0] * 2 * nd)
        return [(pads[i], pads[nd + i]) for i in range(nd)]
    result = []
    for i in range(nd):
        total = _same_total(x_shape[2 + i], strides[i], dilations[i] * (w_shape[2 + i] - 1) + 1)
        small = total // 2
        result.append((small, total - small) if mode == "SAME_UPPER" else (total - small, small))
    return result


def torch_conv(x, w, attrs):
    nd = x.dim() - 2
    pads = _conv_pads(tuple(x.shape), tuple(w.shape), attrs)
    x = F.pad(x, [p for pair in reversed(pads) for p in pair])
    fn = (F.conv1d, F.conv2d, F.conv3d)[nd - 1]
    return fn(
        x,
        w,
        stride=attrs.get("strides", 1),
        dilation=attrs.get("dilations", 1),
        groups=attrs.get("group", 1),
    )


def torch_conv_transpose(x, w, attrs):
    """The unpadded transposed conv, then out[j] = full[j + begin pad] (zeros past its end)."""
    nd = x.dim() - 2
    strides = attrs.get("strides", [1] * nd)
    dilations = attrs.get("dilations", [1] * nd)
    extra = attrs.get("output_padding", [0] * nd)
    fn = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[nd - 1]
    full = fn(x, w, stride=strides, dilation=dilations, groups=attrs.get("group", 1))
    mode = attrs.get("auto_pad", "NOTSET")
    for i in range(nd):
        natural = full.shape[2 + i] + extra[i]
        if "output_shape" in attrs or mode.startswith("SAME"):
            want = (
                attrs["output_shape"][i] if "output_shape" in attrs else x.shape[2 + i] * strides[i]
            )
            total = max(0, natural - want)
            begin = total // 2 if mode == "SAME_UPPER" else total - total // 2
        else:
            begin, end = attrs.get("pads", [0] * 2 * nd)[i], attrs.get("pads", [0] * 2 * nd)[nd + i]
            want = natural - begin - end
        full = full.narrow(2 + i, begin, min(want, full.shape[2 + i] - begin))
        short = want - full.shape[2 + i]
        full = F.pad(full, [0, 0] * (nd - 1 - i) + [0, short])
    return full


def _check_against_torch(op, x_shape, w_shape, attrs, torch_fn):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype("f")
    w = rng.standard_normal(w_shape).astype("f")
    model = _model(op, x_shape, w, attrs)
    y_shape = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    dy = rng.standard_normal(y_shape).astype("f")
    y, dx = _run_ort(model, x, dy)
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    yt = torch_fn(xt, torch.tensor(w, dtype=torch.float64), attrs)
    (dxt,) = torch.autograd.grad(yt, xt, torch.tensor(dy, dtype=torch.float64))
    assert y.shape == tuple(yt.shape)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-4, atol=1e-4)
    assert dx.shape == x.shape
    np.testing.assert_allclose(dx, dxt.numpy(), rtol=1e-4, atol=1e-4 * np.abs(dxt.numpy()).max())


@pytest.mark.parametrize("x_shape, w_shape, attrs, strategy", list(_strategies()))
def test_conv_gradient_matches_torch(x_shape, w_shape, attrs, strategy, monkeypatch):
    monkeypatch.setattr(conv_rules, "choose_strategy", lambda spec: strategy)
    _check_against_torch("Conv", x_shape, w_shape, attrs, torch_conv)


@pytest.mark.parametrize("x_shape, w_shape, attrs", CONV_TRANSPOSE, ids=str)
def test_conv_transpose_gradient_matches_torch(x_shape, w_shape, attrs):
    _check_against_torch("ConvTranspose", x_shape, w_shape, attrs, torch_conv_transpose)


@pytest.mark.parametrize("opset", [13, 21])
def test_emitted_ops_exist_at_opset(opset):
    """The checker (full_check) validates every emitted node against the opset's schemas."""
    w = np.ones((6, 2, 3, 3), "f")
    for attrs in ({"group": 2, "pads": [1, 0, 2, 1]}, {"group": 2, "strides": [2, 2]}):
        model = _model("Conv", (1, 4, 7, 7), w, attrs, opset=opset)
        assert {n.domain for n in model.graph.node} == {""}
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    dw = np.ones((4, 1, 3, 3), "f")
    _model("Conv", (1, 4, 8, 8), dw, {"group": 4, "strides": [2, 2]}, opset=opset)


@pytest.mark.parametrize(
    "w_shape, attrs",
    [
        ((6, 2, 3, 3), {"group": 2, "pads": [1, 1, 1, 1]}),
        ((4, 1, 5, 5), {"group": 4, "strides": [2, 2]}),
    ],
)
def test_weights_are_shared_and_folded(w_shape, attrs, tmp_path):
    """No copied weight in the file; onnxruntime folds the weight Slice/Transpose/Reshape away."""
    model = _model("Conv", (1, 4, 9, 9), np.ones(w_shape, "f"), attrs)
    sizes = [np.prod(t.dims) for t in model.graph.initializer if t.data_type == TensorProto.FLOAT]
    assert [n for n in sizes if n >= np.prod(w_shape)] == [np.prod(w_shape)]  # w itself
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    ops = {n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node}
    assert ops <= {"Conv", "ConvTranspose"}, ops


@pytest.mark.parametrize(
    "attrs, message",
    [
        (
            {"kernel_shape": [2, 2]},
            "Conv node 'conv_node' (output y): kernel_shape [2, 2] does not match",
        ),
        ({"auto_pad": "FOO"}, "auto_pad FOO"),
    ],
)
def test_bad_attributes_are_named(attrs, message):
    with pytest.raises(InputError, match=re.escape(message)):
        _model("Conv", (1, 2, 5, 5), np.ones((3, 2, 3, 3), "f"), attrs)
