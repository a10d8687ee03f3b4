"""The argmax seed's product with a classifier's weights becomes a row lookup
(``edgesal.graph.onehot``): same maps, no backward Gemm, and only where the indices are ArgMax's."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

import edgesal.export.pipeline
from edgesal import metadata
from edgesal.export import ExportOptions, export_saliency
from edgesal.quant.prepare import one_hot_products
from tests.models import nchw_cnn


def _balanced(model: onnx.ModelProto) -> onnx.ModelProto:
    """The classifier rescaled so that each class wins on some random images (the tiny net's own
    weights give every random image the same top class)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    weights = {t.name: t for t in model.graph.initializer}
    fc, fcb = (numpy_helper.to_array(weights[k]) for k in ("fc", "fcb"))
    images = 3 * np.random.default_rng(0).standard_normal((32, 2, 3, 16, 16)).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    logits = np.concatenate([session.run(["logits"], {"image": x})[0] for x in images]) - fcb
    mean, std = logits.mean(axis=0), logits.std(axis=0)
    for name, value in (("fc", fc / std[:, None]), ("fcb", -mean / std)):
        weights[name].CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))
    return model


def _transposed_head(model: onnx.ModelProto, alpha: float) -> onnx.ModelProto:
    """The same classifier as Gemm(f, W^T / alpha, b, alpha), transB=0: its gradient reads
    columns of the weights and scales them."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    fc = numpy_helper.to_array(weights["fc"])
    weights["fc"].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(fc.T / alpha), "fc"))
    head = next(n for n in graph.node if n.op_type == "Gemm")
    head.CopyFrom(helper.make_node("Gemm", ["f", "fc", "fcb"], ["logits"], alpha=alpha))
    return model


def _export(model, monkeypatch, lookups: bool, **options) -> onnx.ModelProto:
    with monkeypatch.context() as patch:
        if not lookups:
            patch.setattr(edgesal.export.pipeline, "gather_one_hot_products", lambda model: [])
        return export_saliency(model, ExportOptions(reduce="none", normalize="none", **options))


def _run(model: onnx.ModelProto, x: np.ndarray, **feeds) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["logits", "saliency"], {"image": x, **feeds})


@pytest.mark.parametrize(
    "model",
    [_balanced(nchw_cnn(batch=2)), _transposed_head(_balanced(nchw_cnn(batch=2)), alpha=0.5)],
    ids=["transB=1", "transB=0 alpha=0.5"],
)
@pytest.mark.parametrize("method", ["vanilla", "guided"])
def test_argmax_seed_through_the_classifier_is_a_row_lookup(model, method, monkeypatch):
    fast = _export(model, monkeypatch, True, method=method)
    plain = _export(model, monkeypatch, False, method=method)
    ops = [n.op_type for n in fast.graph.node]
    assert ops.count("Gemm") == 1 and "Gather" in ops and "OneHot" not in ops
    assert [n.op_type for n in plain.graph.node].count("Gemm") == 2
    for seed in range(50):  # two images that pick different rows
        x = 3 * np.random.default_rng(seed).standard_normal((2, 3, 16, 16)).astype(np.float32)
        logits, got = _run(fast, x)
        if len(set(logits.argmax(axis=1))) == 2:
            break
    assert len(set(logits.argmax(axis=1))) == 2
    np.testing.assert_array_equal(got, _run(plain, x)[1])


@pytest.mark.parametrize("target", ["input", "class:3"])
def test_other_seeds_keep_the_product(target, monkeypatch):
    """A runtime target index may lie out of range (OneHot gives a zero row, Gather fails), and a
    constant seed is no ArgMax: both keep the Gemm."""
    model = _export(nchw_cnn(), monkeypatch, True, target=target)
    assert [n.op_type for n in model.graph.node].count("Gemm") == 2


@pytest.mark.parametrize(
    "model", [_balanced(nchw_cnn(batch=2)), _transposed_head(_balanced(nchw_cnn(batch=2)), 0.5)]
)
def test_quantization_gets_the_product_back(model, monkeypatch):
    """int8 wants the product (one int8 weight copy); undoing the lookup restores the seed too."""
    fast, plain = _export(model, monkeypatch, True), _export(model, monkeypatch, False)
    products = [n.output[0] for n in plain.graph.node if n.op_type == "Gemm"][1:]
    assert metadata.read(fast)["seeds"] == products  # the lookup's result starts the backward
    undone = onnx.ModelProto.FromString(fast.SerializeToString())
    assert one_hot_products(undone) == 1
    ops = [n.op_type for n in undone.graph.node]
    assert ops.count("Gemm") == 2 and "OneHot" in ops and "Gather" not in ops
    one_hot = next(n.output[0] for n in undone.graph.node if n.op_type == "OneHot")
    assert metadata.read(undone)["seeds"] == [one_hot]
    x = 3 * np.random.default_rng(3).standard_normal((2, 3, 16, 16)).astype(np.float32)
    np.testing.assert_array_equal(_run(undone, x)[1], _run(fast, x)[1])
