"""Reading saliency graphs: seeds, backward tensors, and rewrites that keep the float function."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from edgesal.errors import InputError
from edgesal.quant.graph import describe, fold_constants
from edgesal.quant.prepare import compared_bounds, masked_products, prepare, shared_weights
from tests.quant.conftest import SIZE, tiny_classifier


def _run(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(
        zip([o.name for o in sess.get_outputs()], sess.run(None, {"image": x}), strict=True)
    )


def _image(seed=0):
    return np.random.default_rng(seed).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)


@pytest.mark.parametrize("method", ["vanilla", "gradcam", "integrated"])
def test_backward_region_starts_at_the_seed(tiny_saliency, method):
    model = tiny_saliency[method]
    graph = describe(model)
    assert (graph.image, graph.scores, graph.saliency) == ("image", "logits", "saliency")
    assert graph.is_backward("saliency") and not graph.is_backward("logits")
    forward = {o for n in tiny_classifier().graph.node for o in n.output}
    assert not forward & graph.backward
    if method == "integrated":  # the batched forward copy of the path points is forward too
        copies = {
            o for n in model.graph.node if n.name.startswith("edgesal/samples") for o in n.output
        }
        assert copies and not copies & graph.backward


def test_a_classifier_is_not_a_saliency_model():
    with pytest.raises(InputError, match="not an edgesal saliency model"):
        describe(tiny_classifier(), "plain.onnx")


@pytest.mark.parametrize("method", ["vanilla", "integrated"])
def test_prepare_keeps_the_float_function(tiny_saliency, method):
    model = tiny_saliency[method]
    prepared = prepare(model)
    for seed in range(3):
        x = _image(seed)
        want, got = _run(model, x), _run(prepared, x)
        for name in ("logits", "saliency"):
            np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6)
    ops = [n.op_type for n in prepared.graph.node]
    assert "Sum" not in ops
    assert ops.count("DequantizeLinear") == len(masked_products(prepared)) > 0


def test_folding_turns_kernel_flips_into_weights(tiny_saliency):
    model = tiny_saliency["vanilla"]
    folded = fold_constants(model)
    initializers = {t.name for t in folded.graph.initializer}
    convs = [n for n in folded.graph.node if n.op_type == "Conv"]
    assert all(n.input[1] in initializers for n in convs)
    assert len(folded.graph.node) < len(model.graph.node)


def test_shared_weights_and_mask_bounds(tiny_saliency):
    prepared = prepare(tiny_saliency["vanilla"])
    assert shared_weights(prepared) == ["fc"]  # the classifier and its gradient Gemm
    bounds = compared_bounds(prepared)
    assert sorted(bounds["r1"]) == [0.0, 6.0]  # the ReLU6 mask reads its output
