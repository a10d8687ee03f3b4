"""edgesal.runtimes.backends.onnx_masks: comparison masks -> HardSigmoids, bit-identical on float32
CPU."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgesal.export import ExportOptions, export_saliency
from edgesal.runtimes.backends import onnxrt
from edgesal.runtimes.backends.onnx_masks import nchwc_masks, portable_masks
from tests.models import nchw_cnn

SHAPE = [1, 2, 4, 8]


def _run(model: bytes, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)


def _ops(model: bytes) -> list[str]:
    return [n.op_type for n in onnx.load_from_string(model).graph.node]


def _masks_graph(bound_node: bool = False) -> onnx.ModelProto:
    """g * 1[0 < v < 6], g * 1[v > 0.5] (bound from a Constant node or an initializer), and
    g * 1[v < -1]."""
    inits = [
        numpy_helper.from_array(np.array(v, np.float32), n)
        for n, v in (("zero", 0.0), ("six", 6.0), ("minus_one", -1.0))
    ]
    nodes = [
        helper.make_node("Greater", ["v", "zero"], ["above"]),
        helper.make_node("Less", ["v", "six"], ["below"]),
        helper.make_node("And", ["above", "below"], ["inside"]),
        helper.make_node("Cast", ["inside"], ["inside_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["g", "inside_f"], ["interval"]),
        helper.make_node("Greater", ["v", "half"], ["over_half"]),
        helper.make_node("Cast", ["over_half"], ["over_half_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["g", "over_half_f"], ["lower"]),
        helper.make_node("Less", ["v", "minus_one"], ["under"]),
        helper.make_node("Cast", ["under"], ["under_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["g", "under_f"], ["upper"]),
    ]
    half = np.array([0.5], np.float32)  # one element of rank 1 counts as a scalar bound
    if bound_node:
        nodes.insert(
            0, helper.make_node("Constant", [], ["half"], value=numpy_helper.from_array(half))
        )
    else:
        inits.append(numpy_helper.from_array(half, "half"))
    graph = helper.make_graph(
        nodes,
        "masks",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, SHAPE) for n in ("v", "g")],
        [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, SHAPE)
            for n in ("interval", "lower", "upper")
        ],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _edge_values() -> np.ndarray:
    """Values at, just beside and far from every bound, plus tiny and huge magnitudes."""
    f32 = np.float32
    picks = [
        0.0,
        -0.0,
        2.0**-99,
        -(2.0**-99),
        1e-30,
        6.0,
        np.nextafter(f32(6), f32(0)),
        np.nextafter(f32(6), f32(7)),
        0.5,
        np.nextafter(f32(0.5), f32(1)),
        np.nextafter(f32(0.5), f32(0)),
        -1.0,
        np.nextafter(f32(-1), f32(0)),
        np.nextafter(f32(-1), f32(-2)),
        3.0,
        -3.0,
        1e9,
        -1e9,
        1e30,
        -1e30,
    ]
    values = np.resize(np.array(picks, np.float32), int(np.prod(SHAPE)))
    return values.reshape(SHAPE)


@pytest.mark.parametrize("bound_node", [False, True])
def test_masks_become_hard_sigmoids_with_identical_results(bound_node):
    model = _masks_graph(bound_node).SerializeToString()
    rewritten = nchwc_masks(model)
    ops = _ops(rewritten)
    assert not {"Greater", "Less", "And", "Cast"} & set(ops)
    assert ops.count("HardSigmoid") == 4
    onnx.checker.check_model(onnx.load_from_string(rewritten))
    feeds = {"v": _edge_values(), "g": np.full(SHAPE, 3.0, np.float32)}
    for before, after in zip(_run(model, feeds), _run(rewritten, feeds), strict=True):
        np.testing.assert_array_equal(before, after)
    interval = _run(rewritten, feeds)[0].ravel()
    v = feeds["v"].ravel()
    np.testing.assert_array_equal(interval, np.where((v > 0) & (v < 6), 3.0, 0.0))


def test_the_replaced_bounds_leave_the_graph_when_nothing_else_reads_them():
    rewritten = onnx.load_from_string(nchwc_masks(_masks_graph().SerializeToString()))
    assert {i.name for i in rewritten.graph.initializer} == set()


@pytest.mark.parametrize(
    "change",
    [
        "bound is a graph input",
        "condition read twice",
        "cast to int",
        "bound first",
        "graph with a subgraph",
    ],
)
def test_masks_it_does_not_understand_are_left_alone(change):
    model = _masks_graph()
    nodes = model.graph.node
    if change == "bound is a graph input":
        model.graph.input.append(helper.make_tensor_value_info("b", TensorProto.FLOAT, []))
        for node in nodes:
            node.input[:] = [
                "b" if i in ("zero", "six", "half", "minus_one") else i for i in node.input
            ]
    elif change == "condition read twice":
        for name in ("above", "below", "over_half", "under"):
            model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.BOOL, SHAPE))
    elif change == "cast to int":
        for node in nodes:
            if node.op_type == "Cast":
                node.attribute[0].i = TensorProto.INT32
    elif change == "bound first":
        for node in nodes:
            if node.op_type in ("Greater", "Less"):
                node.input[:] = list(reversed(node.input))
    else:
        branch = helper.make_graph(
            [helper.make_node("Identity", ["above"], ["picked"])],
            "branch",
            [],
            [helper.make_tensor_value_info("picked", TensorProto.BOOL, SHAPE)],
        )
        model.graph.input.append(helper.make_tensor_value_info("flag", TensorProto.BOOL, []))
        nodes.append(
            helper.make_node("If", ["flag"], ["chosen"], then_branch=branch, else_branch=branch)
        )
        model.graph.output.append(helper.make_tensor_value_info("chosen", TensorProto.BOOL, SHAPE))
    raw = model.SerializeToString()
    assert nchwc_masks(raw) == raw


@pytest.mark.parametrize("method", ["vanilla", "guided", "integrated"])
def test_an_exported_saliency_model_gives_the_same_bits(method):
    exported = export_saliency(nchw_cnn(seed=3), ExportOptions(method=method))
    raw = exported.SerializeToString()
    rewritten = nchwc_masks(raw)
    assert "HardSigmoid" in _ops(rewritten) and "Greater" not in _ops(rewritten)
    image = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    for before, after in zip(
        _run(raw, {"image": image}), _run(rewritten, {"image": image}), strict=True
    ):
        np.testing.assert_array_equal(before, after)


def test_only_the_cpu_provider_alone_gets_the_rewrite(monkeypatch):
    raw = export_saliency(nchw_cnn(), ExportOptions(method="vanilla")).SerializeToString()
    monkeypatch.setattr(onnxrt.platform, "machine", lambda: "x86_64")
    assert onnxrt.for_providers(raw, ["CPUExecutionProvider"]) != raw
    assert onnxrt.for_providers(raw, ["CUDAExecutionProvider", "CPUExecutionProvider"]) == raw
    monkeypatch.setattr(onnxrt.platform, "machine", lambda: "aarch64")
    assert onnxrt.for_providers(raw, ["CPUExecutionProvider"]) == raw


def test_gpu_providers_get_the_portable_masks_of_a_file_exported_for_the_cpu():
    raw = export_saliency(nchw_cnn(), ExportOptions(method="vanilla")).SerializeToString()
    fast = nchwc_masks(raw)
    gpu = onnxrt.for_providers(fast, ["TensorrtExecutionProvider", "CPUExecutionProvider"])
    assert "HardSigmoid" not in _ops(gpu) and sorted(_ops(gpu)) == sorted(_ops(raw))


@pytest.mark.parametrize("bound_node", [False, True])
def test_portable_masks_undo_the_rewrite_exactly(bound_node):
    model = _masks_graph(bound_node).SerializeToString()
    back = portable_masks(nchwc_masks(model))
    assert sorted(_ops(back)) == sorted(_ops(model))
    onnx.checker.check_model(onnx.load_from_string(back), full_check=True)
    feeds = {"v": _edge_values(), "g": np.full(SHAPE, 3.0, np.float32)}
    for before, after in zip(_run(model, feeds), _run(back, feeds), strict=True):
        np.testing.assert_array_equal(before, after)
    half = onnx.load_from_string(back).graph.initializer
    assert sorted(float(numpy_helper.to_array(t)) for t in half) == [-1.0, 0.0, 0.5, 6.0]


def test_portable_masks_leave_other_hard_sigmoids_alone():
    node = helper.make_node("HardSigmoid", ["v"], ["y"], alpha=0.2, beta=0.5)
    graph = helper.make_graph(
        [node],
        "hs",
        [helper.make_tensor_value_info("v", TensorProto.FLOAT, SHAPE)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, SHAPE)],
    )
    raw = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    assert portable_masks(raw) == raw


def test_an_initializer_also_listed_as_a_graph_input_is_kept():
    model = _masks_graph()
    model.graph.input.append(helper.make_tensor_value_info("six", TensorProto.FLOAT, []))
    rewritten = onnx.load_from_string(nchwc_masks(model.SerializeToString()))
    assert "HardSigmoid" in [n.op_type for n in rewritten.graph.node]
    assert {i.name for i in rewritten.graph.initializer} == {"six"}
