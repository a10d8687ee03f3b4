"""Graph simplifications of the exporter that keep the map: one-channel reductions, the Grad-CAM
weights of a layer that feeds a global average pool, and the sweep of unread appended nodes."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from edgesal.export import ExportOptions, export_saliency
from edgesal.export.postprocess import reduce_channels
from edgesal.graph.builder import Builder
from edgesal.methods import MethodOptions, cam
from tests.models import nchw_cnn


def _reduced(shape: tuple[int, ...], layout: str, how: str, x: np.ndarray) -> np.ndarray:
    graph = helper.make_graph(
        [], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)], []
    )
    b = Builder(graph, 17)
    channel_axis = 1 if layout == "NCHW" else 3
    name, out_shape, signed = reduce_channels(b, "x", shape, channel_axis, how)
    graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, out_shape))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert not signed and "ReduceMax" not in [n.op_type for n in graph.node]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize("how", ["absmax", "abssum", "l2"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_one_channel_reduces_to_its_magnitude(how, layout):
    shape = (2, 1, 4, 5) if layout == "NCHW" else (2, 4, 5, 1)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    got = _reduced(shape, layout, how, x)
    np.testing.assert_array_equal(got, np.abs(x).reshape(2, 4, 5))


def _export(model, method: str, **params) -> onnx.ModelProto:
    options = ExportOptions(method=method, params=MethodOptions(**params))
    return export_saliency(model, options)


def test_grad_cam_of_a_pooled_layer_reads_the_pooled_gradient(monkeypatch):
    """The last feature map feeds GlobalAveragePool: its gradient is one value per channel, so
    the weights are that value, with no broadcast and mean in the graph, and the same map as the
    mean gives; an earlier layer, whose gradient varies over space, keeps the mean."""
    model = nchw_cnn(batch=2)
    pooled = _export(model, "gradcam")
    ops = [n.op_type for n in pooled.graph.node if n.name.startswith("edgesal/")]
    assert "Expand" not in ops and "ReduceMean" not in ops
    earlier = _export(model, "gradcam", layer="r2")
    assert "ReduceMean" in [n.op_type for n in earlier.graph.node]
    with monkeypatch.context() as patch:
        patch.setattr(
            cam, "_spatial_mean", lambda ctx, g, axes: ctx.b.reduce("ReduceMean", g, axes, 1)
        )
        averaged = _export(model, "gradcam")
    assert "ReduceMean" in [n.op_type for n in averaged.graph.node]
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)
    got, want = (
        ort.InferenceSession(m.SerializeToString()).run(["saliency"], {"image": x})[0]
        for m in (pooled, averaged)
    )
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_unread_appended_nodes_are_swept_and_the_model_is_not_touched():
    """Integrated gradients copies the forward pass for its samples; the copy's classifier head
    is unread (the seed comes from the model's own logits) and is removed, while a node of the
    model itself that nothing reads stays."""
    model = nchw_cnn()
    model.graph.node.append(helper.make_node("Relu", ["logits"], ["unread"], name="user/unread"))
    exported = _export(model, "integrated", steps=4)
    names = [n.name for n in exported.graph.node]
    assert "user/unread" in names
    used = {i for n in exported.graph.node for i in n.input} | {
        o.name for o in exported.graph.output
    }
    unread = [n.name for n in exported.graph.node if not any(o in used for o in n.output)]
    assert unread == ["user/unread"]
