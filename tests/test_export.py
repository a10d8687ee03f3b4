"""End-to-end export: whole models against float64 finite differences; targets; batches."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx.reference import ReferenceEvaluator

from edgesal import metadata
from edgesal.export import ExportOptions, export_saliency
from tests.models import nchw_cnn, nhwc_tflite_style, to_float64


def _run(model: onnx.ModelProto, feeds: dict) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds), strict=True))


def _raw_gradient(model, x, target="argmax", method="vanilla", extra=None) -> np.ndarray:
    options = ExportOptions(method=method, target=target, reduce="none", normalize="none")
    exported = export_saliency(model, options)
    return _run(exported, {"image": x, **(extra or {})})["saliency"]


def _score(model64: onnx.ModelProto, x: np.ndarray, cls: int) -> float:
    return float(ReferenceEvaluator(model64).run(None, {"image": x})[0][0, cls])


def assert_matches_finite_differences(model: onnx.ModelProto, x: np.ndarray, directions=4):
    """float32 in-graph gradient of the top class vs float64 central differences."""
    model64 = to_float64(model)
    cls = int(np.argmax(_run(model, {"image": x})["logits"][0]))
    grad = _raw_gradient(model, x).astype(np.float64)
    rng = np.random.default_rng(1)
    x64 = x.astype(np.float64)
    for _ in range(directions):
        t = rng.standard_normal(x.shape)
        eps = 1e-5
        numeric = (_score(model64, x64 + eps * t, cls) - _score(model64, x64 - eps * t, cls)) / (
            2 * eps
        )
        analytic = float(np.sum(grad * t))
        assert abs(numeric - analytic) <= 1e-3 * max(1.0, abs(numeric)), (numeric, analytic)


def test_nchw_cnn_gradient_matches_finite_differences():
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    assert_matches_finite_differences(nchw_cnn(), x)


def test_nhwc_converter_style_model_matches_finite_differences():
    x = np.random.default_rng(0).standard_normal((1, 12, 12, 3)).astype(np.float32)
    model = nhwc_tflite_style()
    assert_matches_finite_differences(model, x)
    exported = export_saliency(model, ExportOptions())
    assert metadata.read(exported)["layout"] == "NHWC"
    assert _run(exported, {"image": x})["saliency"].shape == (1, 12, 12)


def test_float64_export_is_exact():
    model64 = to_float64(nchw_cnn())
    x = np.random.default_rng(3).standard_normal((1, 3, 16, 16))
    exported = export_saliency(
        model64, ExportOptions(target="class:2", reduce="none", normalize="none")
    )
    grad = ReferenceEvaluator(exported).run(None, {"image": x})[1]
    t = np.random.default_rng(4).standard_normal(x.shape)
    eps = 1e-6
    numeric = (_score(model64, x + eps * t, 2) - _score(model64, x - eps * t, 2)) / (2 * eps)
    assert abs(numeric - np.sum(grad * t)) < 1e-7 * max(1.0, abs(numeric))


def test_outputs_keep_original_and_add_saliency():
    model = nchw_cnn()
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    out = _run(export_saliency(model, ExportOptions()), {"image": x})
    np.testing.assert_allclose(out["logits"], _run(model, {"image": x})["logits"], rtol=1e-6)
    assert out["saliency"].shape == (1, 16, 16) and out["saliency"].dtype == np.float32
    assert out["saliency"].max() == pytest.approx(1.0, abs=1e-6) and out["saliency"].min() >= 0


def test_targets_class_input_and_output_agree():
    model = nchw_cnn()
    x = np.random.default_rng(5).standard_normal((1, 3, 16, 16)).astype(np.float32)
    by_class = _raw_gradient(model, x, target="class:3")
    by_input = _raw_gradient(model, x, target="input", extra={"target": np.array([3])})
    by_output = _raw_gradient(model, x, target="output:logits:3")
    np.testing.assert_allclose(by_class, by_input, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(by_class, by_output, rtol=1e-5, atol=1e-7)
    top = int(np.argmax(_run(model, {"image": x})["logits"]))
    argmax = _raw_gradient(model, x)
    np.testing.assert_allclose(
        argmax, _raw_gradient(model, x, f"class:{top}"), rtol=1e-5, atol=1e-7
    )


def test_sum_and_mean_targets_are_linear_combinations():
    model = nchw_cnn(classes=3)
    x = np.random.default_rng(6).standard_normal((1, 3, 16, 16)).astype(np.float32)
    per_class = [_raw_gradient(model, x, target=f"class:{k}") for k in range(3)]
    total = _raw_gradient(model, x, target="output:logits:sum")
    mean = _raw_gradient(model, x, target="output:logits:mean")
    np.testing.assert_allclose(total, sum(per_class), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(mean, sum(per_class) / 3, rtol=1e-4, atol=1e-6)


def test_batch_gives_independent_maps():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 3, 16, 16)).astype(np.float32)
    exported = export_saliency(nchw_cnn(batch="N"), ExportOptions(batch=3))
    batched = _run(exported, {"image": x})["saliency"]
    single = export_saliency(nchw_cnn(batch="N"), ExportOptions())
    for i in range(3):
        one = _run(single, {"image": x[i : i + 1]})["saliency"][0]
        np.testing.assert_allclose(batched[i], one, rtol=1e-5, atol=1e-6)


def test_gradxinput_is_input_times_gradient():
    model = nchw_cnn()
    x = np.random.default_rng(8).standard_normal((1, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(
        _raw_gradient(model, x, method="gradxinput"), x * _raw_gradient(model, x), rtol=1e-5
    )


@pytest.mark.parametrize("reduce", ["absmax", "abssum", "l2"])
@pytest.mark.parametrize("norm", ["max", "percentile", "none"])
def test_reduce_and_normalize_match_numpy(reduce, norm):
    model = nchw_cnn()
    x = np.random.default_rng(9).standard_normal((1, 3, 16, 16)).astype(np.float32)
    grad = _raw_gradient(model, x)[0]
    expected = {
        "absmax": np.abs(grad).max(0),
        "abssum": np.abs(grad).sum(0),
        "l2": np.sqrt((grad**2).sum(0)),
    }[reduce]
    if norm == "max":
        expected = expected / expected.max()
    elif norm == "percentile":
        k = int(np.ceil(expected.size * 0.01))
        expected = np.clip(expected / np.sort(expected.ravel())[::-1][k - 1], 0, 1)
    exported = export_saliency(model, ExportOptions(reduce=reduce, normalize=norm))
    got = _run(exported, {"image": x})["saliency"][0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_metadata_describes_the_export():
    exported = export_saliency(nchw_cnn(), ExportOptions(method="gradxinput", target="class:1"))
    meta = metadata.read(exported)
    assert meta["method"] == "gradxinput" and meta["target"] == "class:1"
    assert meta["input"] == "image" and meta["layout"] == "NCHW"
    assert meta["outputs"] == {"scores": "logits", "saliency": "saliency"}
    assert meta["postprocess"] == {"reduce": "absmax", "normalize": "max"}


def test_exported_graph_uses_default_domain_only():
    exported = export_saliency(nhwc_tflite_style(), ExportOptions())
    assert {n.domain for n in exported.graph.node} <= {""}
    assert not any(n.op_type == "Gradient" for n in exported.graph.node)
    onnx.checker.check_model(exported, full_check=True)


def test_torch_exported_model_with_computed_pads_and_shapes():
    """torch.onnx emits pads and reshape shapes as small subgraphs; they are folded first."""
    import io

    import torch
    import torch.nn.functional as F

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.fc = torch.nn.Linear(4 * 8 * 8, 5)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv(F.pad(x, (1, 1, 1, 1), mode="reflect"))), 2)
            return self.fc(x.reshape(x.size(0), -1))

    torch.manual_seed(0)
    net = Net().eval()
    buffer = io.BytesIO()
    torch.onnx.export(
        net,
        torch.randn(1, 3, 16, 16),
        buffer,
        dynamo=False,
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "N"}},
    )
    model = onnx.load_from_string(buffer.getvalue())
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    xt = torch.from_numpy(x).requires_grad_(True)
    out = net(xt)
    out[0, out[0].argmax()].backward()
    np.testing.assert_allclose(_raw_gradient(model, x), xt.grad.numpy(), rtol=1e-4, atol=1e-6)
