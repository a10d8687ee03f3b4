"""``edgesal doctor``: per-method support, FLOP estimates and kept activation bytes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgesal.cli import main
from edgesal.export import ExportOptions, export_saliency
from edgesal.tools.doctor import diagnose, format_diagnosis, graph_flops, kept_activation_bytes
from tests.test_rebatch import _graph


def _model(activation: str = "Relu", domain: str = "") -> onnx.ModelProto:
    """x [1,3,8,8] -> Conv(4, 3x3, pad 1) -> ACTIVATION -> Flatten -> MatMul -> logits [1,5]."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal((256, 5)).astype(np.float32), "fc"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node(activation, ["c"], ["h"], name="act", domain=domain),
        helper.make_node("Flatten", ["h"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "fc"], ["logits"], name="fc"),
    ]
    graph = helper.make_graph(
        nodes,
        "doctor",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 5])],
        inits,
    )
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(graph, opset_imports=opsets)


def test_forward_flops_by_hand():
    conv = 2 * (4 * 8 * 8) * (3 * 3 * 3)  # 2 * outputs * (C_in * kh * kw)
    relu = 4 * 8 * 8
    matmul = 2 * 5 * 256
    assert graph_flops(_model()) == conv + relu + matmul


def test_vanilla_keeps_the_relu_gate_and_scores_and_costs_about_one_more_pass():
    model = _model()
    found = diagnose(model, methods=["vanilla"])
    (report,) = found.methods
    assert report.ok
    # the backward reads the ReLU gate [1, 4, 8, 8] and the argmax seed the scores [1, 5]
    exported = export_saliency(model, ExportOptions(method="vanilla"))
    assert kept_activation_bytes(exported, model) == report.kept_bytes == (4 * 8 * 8 + 5) * 4
    assert 0.5 * found.forward_flops <= report.saliency_flops <= 3 * found.forward_flops


def test_missing_rule_is_named_with_its_node():
    found = diagnose(_model("Celu"), methods=["vanilla", "gradcam"])
    vanilla = found.methods[0]
    assert not vanilla.ok and vanilla.missing == [("Celu", "act")]
    assert "missing rule: Celu (node 'act')" in format_diagnosis(found)


def test_custom_ops_are_listed():
    found = diagnose(_model("MyAct", domain="com.example"), methods=["vanilla"])
    assert found.custom_ops == [("com.example", "MyAct", "act")]
    assert not found.methods[0].ok
    assert "MyAct (com.example, node 'act')" in format_diagnosis(found)


def test_fixed_batch_rewrites_and_fallback_are_reported():
    found = diagnose(_graph("reshape"), ExportOptions(target="class:1"), ["integrated"])
    assert found.methods[0].batching["mode"] == "rebatched"
    assert "rebatched (chunks of 2), 1 rewrite(s): Reshape" in format_diagnosis(found)
    merged = diagnose(_graph("merged"), ExportOptions(target="class:1"), ["smoothgrad"])
    assert "one sample at a time: Reshape" in format_diagnosis(merged)


@pytest.mark.parametrize("json_flag", [False, True])
def test_cli_doctor(tmp_path, capsys, json_flag):
    path = tmp_path / "m.onnx"
    onnx.save(_model(), str(path))
    assert main(["doctor", str(path)] + (["--json"] if json_flag else [])) == 0
    out = capsys.readouterr().out
    assert ('"method": "integrated"' if json_flag else "integrated  ok") in out
