"""Detectors (issue 13 part 6): ``--target output:NAME:input`` chooses the explained element at run
time, and ``edgesal.runtimes`` explains the top-k elements in one batch, with their boxes.

References: the map of element i equals the export with the fixed target ``output:NAME:i``; the
raw gradient equals torch autograd of score i on the same weights; boxes equal the model's own box
output decoded by hand."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from edgesal import metadata
from edgesal.cli import main
from edgesal.converters import to_tflite
from edgesal.errors import InputError, TargetError
from edgesal.export import ExportOptions, export_saliency
from edgesal.export.boxes import check_pairing, read_anchors
from edgesal.runtimes.detections import BoxSpec, Detection, draw_boxes, element_box
from edgesal.runtimes.errors import ModelError
from edgesal.runtimes.model import MethodChain
from edgesal.runtimes.overlay import draw
from edgesal.runtimes.pipeline import Pipeline, PipelineConfig
from edgesal.runtimes.selfcheck import CheckConfig

GRID, CELLS = 16, 4  # a 16x16 image, a 4x4 grid of anchors (16 boxes)


class TinyDetector(nn.Module):
    """SSD-like: per anchor one score logit and a box (cx, cy, w, h in pixels around the anchor)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(8, 5, 4, stride=4)
        centres = (np.arange(CELLS) + 0.5) * (GRID / CELLS)
        cy, cx = np.meshgrid(centres, centres, indexing="ij")
        self.register_buffer("anchors", torch.tensor(np.stack([cx, cy], -1).reshape(1, -1, 2)))

    def forward(self, x):
        out = self.head(self.body(x)).permute(0, 2, 3, 1).reshape(x.shape[0], CELLS * CELLS, 5)
        centre = self.anchors.float() + out[..., 1:3]
        size = 4.0 * torch.exp(0.1 * out[..., 3:5])
        return out[..., :1], torch.cat([centre, size], dim=-1)


@pytest.fixture(scope="module")
def detector():
    torch.manual_seed(0)
    net = TinyDetector().eval()
    buffer = io.BytesIO()
    x = torch.randn(1, 3, GRID, GRID)
    torch.onnx.export(
        net, (x,), buffer, dynamo=False, opset_version=17, input_names=["image"],
        output_names=["scores", "boxes"], dynamic_axes={"image": {0: "N"}},
    )  # fmt: skip
    image = np.random.default_rng(2).standard_normal((1, 3, GRID, GRID)).astype(np.float32)
    return net, onnx.load_from_string(buffer.getvalue()), image


def _run(model, feeds) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))


def _save(tmp_path, model, **options) -> str:
    path = tmp_path / "det.onnx"
    onnx.save(export_saliency(model, ExportOptions(**options)), str(path))
    return str(path)


def test_runtime_element_input_equals_fixed_targets_and_torch(detector):
    net, model, image = detector
    exported = export_saliency(
        model, ExportOptions(target="output:scores:input", reduce="none", normalize="none")
    )
    assert [i.name for i in exported.graph.input] == ["image", "target"]
    meta = metadata.read(exported)
    assert meta["target"] == "output:scores:input" and meta["outputs"]["scores"] == "scores"
    for index in (0, 5, 15):
        got = _run(exported, {"image": image, "target": np.array([index], np.int64)})["saliency"]
        fixed = ExportOptions(target=f"output:scores:{index}", reduce="none", normalize="none")
        np.testing.assert_array_equal(got, _run(export_saliency(model, fixed), {"image": image})[
            "saliency"])  # fmt: skip
        xt = torch.from_numpy(image).requires_grad_(True)
        net(xt)[0][0, index, 0].backward()
        np.testing.assert_allclose(got, xt.grad.numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("batch", "k"), [(3, 3), (1, 4), (2, 5)])
def test_detect_explains_the_top_k_in_batches(detector, tmp_path, batch, k):
    """--batch 3, k 3: one call; batch 1, k 4: four calls; batch 2, k 5: three calls."""
    _, model, image = detector
    options = dict(target="output:scores:input", boxes_output="boxes", boxes_format="cxcywh")
    path = _save(tmp_path, model, batch=batch, **options)
    variant = MethodChain.load([path])[0]
    backend_run, map_calls = variant.backend.run, []

    def counted(outputs, feeds):
        map_calls.extend(["saliency"] if "saliency" in outputs else [])
        return backend_run(outputs, feeds)

    variant.backend.run = counted
    found = variant.detect(image, k)
    assert len(map_calls) == -(-k // batch)  # the k maps in batches of the model's batch
    plain = _run(model, {"image": image})
    order = np.argsort(-plain["scores"][0, :, 0], kind="stable")[:k]
    assert [d.index for d in found] == order.tolist()
    for det in found:
        fixed = ExportOptions(target=f"output:scores:{det.index}")
        expected = _run(export_saliency(model, fixed), {"image": image})["saliency"][0]
        np.testing.assert_allclose(det.saliency, expected, rtol=1e-5, atol=1e-6)
        assert det.score == pytest.approx(plain["scores"][0, det.index, 0], rel=1e-5)
        cx, cy, w, h = plain["boxes"][0, det.index]
        np.testing.assert_allclose(det.box, (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), 1e-5)


def test_detector_index_out_of_range_is_refused(detector, tmp_path):
    _, model, image = detector
    variant = MethodChain.load([_save(tmp_path, model, target="output:scores:input")])[0]
    with pytest.raises(ModelError, match=r"detector index 16 is out of range: output 'scores' "
                       r"has 16 elements per item \(valid: 0..15\)"):  # fmt: skip
        variant.explain_elements(image, [3, 16])
    with pytest.raises(ModelError, match="detector index -1 is out of range"):
        variant.run(image, -1)
    plain = MethodChain.load([_save(tmp_path, model, target="output:scores:max")])[0]
    with pytest.raises(ModelError, match="export the detector with --target output:NAME:input"):
        plain.detect(image, 3)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"target": "output:nosuch:input"}, TargetError, "no tensor named 'nosuch'"),
        ({"boxes_output": "nosuch"}, InputError, "--boxes-output: 'nosuch' is not an output"),
        ({"boxes_format": "xywh"}, InputError, "--boxes-format xywh: choose xyxy, yxyx"),
        ({"boxes_output": "scores"}, InputError, r"--boxes-output scores: shape \[1, 16, 1\]"),
    ],
)
def test_bad_detector_flags_are_named(detector, options, error, message):
    _, model, _ = detector
    with pytest.raises(error, match=message):
        export_saliency(model, ExportOptions(**{"target": "output:scores:input", **options}))


def test_boxes_are_drawn_scaled_onto_the_picture():
    canvas = np.zeros((64, 64, 3), np.uint8)
    det = Detection(0, 0.9, np.zeros((16, 16), np.float32), box=(2.0, 4.0, 10.0, 12.0))
    draw_boxes(canvas, [det], grid=(16, 16))
    assert (canvas[16:48, 8] == (0, 255, 0)).all() and (canvas[16, 8:40] == (0, 255, 0)).all()
    assert not canvas[30, 24].any()  # inside the box stays untouched


def test_cli_exports_a_detector_with_its_boxes(detector, tmp_path):
    _, model, image = detector
    source, target = tmp_path / "det.onnx", tmp_path / "det_sal.onnx"
    onnx.save(model, str(source))
    argv = ["export", str(source), "-o", str(target), "--target", "output:scores:input"]
    argv += ["--batch", "3", "--boxes-output", "boxes", "--boxes-format", "cxcywh"]
    assert main(argv) == 0
    meta = metadata.read(onnx.load(str(target)))
    assert meta["boxes"] == {"output": "boxes", "format": "cxcywh"}
    anchors = tmp_path / "anchors.json"
    anchors.write_text(json.dumps([[0.5, 0.5, 1.0, 1.0]] * 16))
    argv[-1] = "anchors"
    assert main([*argv, "--boxes-anchors", str(anchors), "--boxes-scale", "16"]) == 0
    boxes = metadata.read(onnx.load(str(target)))["boxes"]
    assert boxes["scale"] == 16 and len(boxes["anchors"]) == 16
    assert main(argv) == 2  # anchors format without anchors: a named error, no traceback
    found = MethodChain.load([str(target)])[0].detect(image, 3)
    assert len(found) == 3 and all(d.box is not None for d in found)


def test_frame_pipeline_explains_the_top_k_and_draws_their_boxes(detector, tmp_path):
    """edgesal.runtimes' frame loop on a detector export: the top-k of the frame's scores are
    explained (the frame's map is the best one's) and their boxes are drawn on the overlay."""
    _, model, _ = detector
    options = dict(target="output:scores:input", boxes_output="boxes", boxes_format="cxcywh")
    path = _save(tmp_path, model, batch=3, **options)
    config = PipelineConfig(top_k=3, smooth=0.0, selfcheck=CheckConfig(every=0))
    pipe = Pipeline([path], config)
    frame = np.random.default_rng(4).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    result = pipe.process(frame)
    variant = pipe.variant
    tensor = variant.preprocessor(frame)[0]
    expected = variant.detect(tensor, 3)
    assert [d.index for d in result.detections] == [d.index for d in expected]
    np.testing.assert_allclose(result.inference.saliency, expected[0].saliency, rtol=1e-6)
    assert result.inference.target == expected[0].index
    assert result.summary()["detections"][0][0] == expected[0].index
    best = expected[0]
    assert pipe.caption(result)[0].startswith(f"3 explained | best #{best.index} score ")
    plain = draw(frame, result.saliency, result.region, pipe.caption(result)[0], config.overlay)
    assert (result.overlay != plain).any()  # the boxes, drawn over the map's region:
    r = result.region
    draw_boxes(plain[r.y : r.y + r.h, r.x : r.x + r.w], expected, (GRID, GRID))
    np.testing.assert_array_equal(result.overlay, plain)


def test_tflite_export_explains_the_same_boxes_on_litert(detector, tmp_path):
    """The detector export converted to TFLite (NHWC image, int64 element input) gives the
    runtime's LiteRT backend the same top-k, maps and boxes as the ONNX file."""
    _, model, image = detector
    options = ExportOptions(
        target="output:scores:input", batch=3, boxes_output="boxes", boxes_format="cxcywh"
    )
    exported = export_saliency(model, options)
    onnx_path, tflite_path = tmp_path / "det.onnx", tmp_path / "det.tflite"
    onnx.save(exported, str(onnx_path))
    tflite_path.write_bytes(to_tflite(exported))
    reference = MethodChain.load([str(onnx_path)])[0].detect(image, 3)
    found = MethodChain.load([str(tflite_path)])[0].detect(image.transpose(0, 2, 3, 1), 3)
    assert [d.index for d in found] == [d.index for d in reference]
    for got, want in zip(found, reference, strict=True):
        np.testing.assert_allclose(got.saliency, want.saliency, atol=1e-5)
        np.testing.assert_allclose(got.box, want.box, rtol=1e-5)


def test_frame_pipeline_explains_the_element_the_user_names(detector, tmp_path):
    _, model, _ = detector
    path = _save(tmp_path, model, target="output:scores:input")
    frame = np.random.default_rng(5).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    chosen = Pipeline([path], PipelineConfig(target_class=7, selfcheck=CheckConfig(every=0)))
    assert [d.index for d in chosen.infer(frame).detections] == [7]
    wrong = Pipeline([path], PipelineConfig(target_class=16, selfcheck=CheckConfig(every=0)))
    with pytest.raises(ModelError, match="detector index 16 is out of range"):
        wrong.infer(frame)


def test_anchor_boxes_decode_as_mediapipe_does():
    """cx = dx / scale * w_a + cx_a, w = dw / scale * w_a (TensorsToDetectionsCalculator)."""
    spec = BoxSpec("boxes", "anchors", ((0.5, 0.25, 1.0, 0.5), (0.1, 0.1, 1.0, 1.0)), 10.0)
    offsets = np.array([[2.0, -1.0, 4.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    cx, cy, w, h = 0.2 * 1.0 + 0.5, -0.1 * 0.5 + 0.25, 0.4 * 1.0, 0.2 * 0.5
    expected = ((cx - w / 2) * 100, (cy - h / 2) * 50, (cx + w / 2) * 100, (cy + h / 2) * 50)
    np.testing.assert_allclose(element_box(offsets, 0, 2, spec, (50, 100)), expected)


def test_anchor_flags_are_checked(detector, tmp_path):
    _, model, _ = detector
    base = dict(target="output:scores:input", boxes_output="boxes", boxes_format="anchors")
    with pytest.raises(InputError, match="--boxes-anchors: needed with --boxes-format anchors"):
        export_saliency(model, ExportOptions(**base))
    with pytest.raises(InputError, match="--boxes-anchors: 3 anchors for the 16 boxes of 'boxes'"):
        export_saliency(model, ExportOptions(**base, boxes_anchors=np.ones((3, 4))))
    bad = tmp_path / "anchors.json"
    bad.write_text("[[1, 2, 3]]")
    with pytest.raises(InputError, match="expected finite \\[A, 4\\] rows"):
        read_anchors(bad)
    good = tmp_path / "anchors.npy"
    np.save(good, np.full((16, 4), 0.5))
    exported = export_saliency(model, ExportOptions(**base, boxes_anchors=read_anchors(good)))
    assert metadata.read(exported)["boxes"]["anchors"][0] == [0.5, 0.5, 0.5, 0.5]


def test_frames_without_a_fresh_map_keep_the_last_boxes(detector, tmp_path):
    """With a map every 2nd frame, the frame between shows the last map and its boxes (the
    detector's best element unchanged), so the boxes do not blink."""
    _, model, _ = detector
    path = _save(tmp_path, model, target="output:scores:input")
    config = PipelineConfig(selfcheck=CheckConfig(every=0), smooth=0.0, governor_interval=1e9)
    pipe = Pipeline([path], config)
    pipe.governor.state = replace(pipe.governor.state, saliency_every=2)  # as a hot device's
    frame = np.random.default_rng(6).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    first, second = pipe.infer(frame, 0), pipe.infer(frame, 1)
    assert first.fresh_map and not second.fresh_map
    assert [d.index for d in second.detections] == [d.index for d in first.detections]
    assert len(first.detections) == 3


def test_boxes_with_symbolic_sizes_past_the_batch_are_named():
    """check_pairing needs known box and score counts per item; a symbol there is an InputError."""
    h = onnx.helper
    f = onnx.TensorProto.FLOAT
    graph = h.make_graph(
        [h.make_node("Identity", ["s"], ["scores"]), h.make_node("Identity", ["b"], ["boxes"])],
        "g",
        [
            h.make_tensor_value_info("s", f, ["N", "P"]),
            h.make_tensor_value_info("b", f, [1, "A", 4]),
        ],
        [
            h.make_tensor_value_info("scores", f, ["N", "P"]),
            h.make_tensor_value_info("boxes", f, [1, "A", 4]),
        ],
    )
    with pytest.raises(InputError, match="known sizes past the batch axis"):
        check_pairing(h.make_model(graph), "boxes", "scores")
