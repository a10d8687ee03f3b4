"""Region-of-interest saliency: the window's map equals the full map cut to the window.

Raw gradients (reduce none, normalize none) are compared, so any crop that changed a value inside
the window would show. Each case also checks which path was taken (crop or plain slice), so a
silent fallback cannot make a crop test pass.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgesal import metadata, zoo
from edgesal.cli import main
from edgesal.errors import InputError
from edgesal.export import ExportOptions, export_saliency
from edgesal.graph.info import TensorInfo
from edgesal.methods import MethodOptions
from edgesal.roi.receptive import Field, Prefix
from tests.models import nchw_cnn, nhwc_tflite_style

RAW = {"reduce": "none", "normalize": "none"}
PARAMS = MethodOptions(steps=4, samples=3)
GRADIENT_METHODS = ["vanilla", "gradxinput", "guided", "integrated", "smoothgrad"]


def run(model: onnx.ModelProto, feeds: dict) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds), strict=True))


def export(model, method="vanilla", **options) -> onnx.ModelProto:
    return export_saliency(model, ExportOptions(method=method, params=PARAMS, **RAW, **options))


def window(full: np.ndarray, layout: str, x0: int, y0: int, w: int, h: int) -> np.ndarray:
    if layout == "NCHW":
        return full[..., y0 : y0 + h, x0 : x0 + w]
    return full[:, y0 : y0 + h, x0 : x0 + w, :]


def assert_window(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())


def roi_info(model: onnx.ModelProto) -> dict:
    return metadata.read(model)["roi"]


@pytest.fixture(scope="module")
def cnn():
    return nchw_cnn(seed=3, batch=2)


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(11).standard_normal((2, 3, 16, 16)).astype(np.float32)


@pytest.fixture(scope="module")
def full_maps(cnn, x):
    return {m: run(export(cnn, m), {"image": x})["saliency"] for m in GRADIENT_METHODS}


BOXES = [
    (3, 5, 9, 12),  # interior
    (0, 4, 5, 10),  # left border
    (11, 2, 16, 9),  # right border
    (4, 0, 12, 3),  # top border
    (5, 13, 10, 16),  # bottom border
    (7, 7, 8, 8),  # one pixel
    (0, 0, 16, 16),  # the whole image
]


@pytest.mark.parametrize("split", ["r1", "d1", "r2", "a1"])
@pytest.mark.parametrize("box", BOXES)
def test_fixed_window_every_split(cnn, x, full_maps, box, split):
    model = export(cnn, roi=box, roi_split=split)
    x0, y0, x1, y1 = box
    got = run(model, {"image": x})["saliency"]
    assert_window(got, window(full_maps["vanilla"], "NCHW", x0, y0, x1 - x0, y1 - y0))
    info = roi_info(model)
    assert info["split"] == split and info["cropped"]
    if box != (0, 0, 16, 16):
        assert info["crop"][0] * info["crop"][1] < 16 * 16, info


@pytest.mark.parametrize("method", GRADIENT_METHODS)
@pytest.mark.parametrize("box", [(3, 5, 9, 12), (11, 2, 16, 9), (0, 13, 2, 16)])
def test_fixed_window_every_gradient_method(cnn, x, full_maps, method, box):
    model = export(cnn, method, roi=box)
    x0, y0, x1, y1 = box
    got = run(model, {"image": x})["saliency"]
    assert_window(got, window(full_maps[method], "NCHW", x0, y0, x1 - x0, y1 - y0))
    assert roi_info(model)["split"] is not None and roi_info(model)["cropped"]


def test_runtime_window_per_item_with_clamping(cnn, x, full_maps):
    w, h = 5, 4
    model = export(cnn, "guided", roi_size=(w, h))
    assert roi_info(model)["split"] is not None
    guided = full_maps["guided"]
    for asked, used in [
        ([[0, 0], [11, 12]], [[0, 0], [11, 12]]),  # both corners, flush
        ([[3, 2], [7, 9]], [[3, 2], [7, 9]]),
        ([[20, -5], [-1, 13]], [[11, 0], [0, 12]]),  # clamped into the image
        ([[6, 1], [1, 6]], [[6, 1], [1, 6]]),
    ]:
        out = run(model, {"image": x, "roi": np.array(asked, np.int64)})
        np.testing.assert_array_equal(out["roi_used"], used)
        for n, (x0, y0) in enumerate(used):
            assert_window(out["saliency"][n], window(guided[n], "NCHW", x0, y0, w, h))


@pytest.mark.parametrize("method", ["integrated", "smoothgrad", "gradxinput"])
def test_runtime_window_batched_samples(cnn, x, full_maps, method):
    model = export(cnn, method, roi_size=(6, 7))
    for asked in ([[2, 3], [10, 9]], [[9, 0], [0, 8]]):
        out = run(model, {"image": x, "roi": np.array(asked, np.int64)})
        for n, (x0, y0) in enumerate(out["roi_used"]):
            assert_window(out["saliency"][n], window(full_maps[method][n], "NCHW", x0, y0, 6, 7))


def test_gradcam_is_the_full_map_cut_to_the_window(cnn, x):
    full = run(export(cnn, "gradcam"), {"image": x})["saliency"]
    model = export(cnn, "gradcam", roi=(2, 3, 9, 15))
    assert_window(run(model, {"image": x})["saliency"], full[..., 3:15, 2:9])
    assert not roi_info(model)["cropped"]


def test_multi_method_model_shares_the_window(cnn, x, full_maps):
    options = {"methods": ["vanilla", "guided", "gradcam"], "roi": (4, 4, 10, 11)}
    outputs = run(export(cnn, **options), {"image": x})
    for name in ("vanilla", "guided"):
        single = run(export(cnn, name, roi=options["roi"]), {"image": x})["saliency"]
        np.testing.assert_array_equal(outputs[f"saliency_{name}"], single)
    assert outputs["saliency_gradcam"].shape == (2, 1, 7, 6)


def test_postprocessing_normalizes_within_the_window(cnn, x, full_maps):
    model = export_saliency(cnn, ExportOptions(roi=(3, 5, 9, 12)))
    got = run(model, {"image": x})["saliency"]
    raw = np.abs(full_maps["vanilla"][:, :, 5:12, 3:9]).max(axis=1)
    expected = raw / (raw.reshape(2, -1).max(axis=1)[:, None, None] + 1e-12)
    assert got.shape == (2, 7, 6)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def nhwc():
    model = nhwc_tflite_style(seed=2)
    x = np.random.default_rng(5).standard_normal((1, 12, 12, 3)).astype(np.float32)
    return model, x, run(export(model), {"image": x})["saliency"]


@pytest.mark.parametrize("split", [None, "t0", "p0", "c1", "a1", "m1"])
@pytest.mark.parametrize("box", [(2, 3, 7, 9), (0, 0, 4, 4), (8, 5, 12, 12)])
def test_nhwc_fixed_window(nhwc, split, box):
    model, x, full = nhwc
    exported = export(model, roi=box, roi_split=split)
    x0, y0, x1, y1 = box
    got = run(exported, {"image": x})["saliency"]
    assert_window(got, window(full, "NHWC", x0, y0, x1 - x0, y1 - y0))
    chosen = roi_info(exported)["split"]
    # The default split is chosen by estimated cost among the prefix tensors the cases name.
    assert chosen == split if split else chosen in {"t0", "p0", "c1", "a1", "m1"}


@pytest.mark.parametrize("split", ["c1", "m1"])
def test_nhwc_runtime_window(nhwc, split):
    model, x, full = nhwc
    exported = export(model, roi_size=(5, 3), roi_split=split)
    for asked in ([0, 0], [7, 9], [4, 4], [30, 1]):
        out = run(exported, {"image": x, "roi": np.array([asked], np.int64)})
        x0, y0 = out["roi_used"][0]
        assert (x0, y0) == (min(asked[0], 7), min(asked[1], 9))
        assert_window(out["saliency"], window(full, "NHWC", x0, y0, 5, 3))


def _flat_model() -> onnx.ModelProto:
    """Flatten straight after the image: no local prefix at all."""
    weight = np.random.default_rng(0).standard_normal((768, 4)).astype(np.float32)
    nodes = [
        helper.make_node("Flatten", ["image"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["mm"]),
        helper.make_node("Tanh", ["mm"], ["logits"]),
    ]
    return _small_model(nodes, {"w": weight}, 4)


def _bypass_model() -> onnx.ModelProto:
    """A conv branch plus a pooled copy of the image itself: nothing carries every path."""
    rng = np.random.default_rng(1)
    weights = {"k": rng.standard_normal((3, 3, 3, 3)).astype(np.float32), "shape": [0, -1]}
    nodes = [
        helper.make_node("Conv", ["image", "k"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pooled"]),
        helper.make_node("GlobalMaxPool", ["image"], ["bypass"]),
        helper.make_node("Add", ["pooled", "bypass"], ["sum"]),
        helper.make_node("Reshape", ["sum", "shape"], ["logits"]),
    ]
    return _small_model(nodes, weights, 3)


def _small_model(nodes, weights: dict, classes: int) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "small",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [2, 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [2, classes])],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in weights.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (_flat_model, "no spatially local prefix"),
        (_bypass_model, "no tensor of the local prefix lies on every path"),
    ],
)
def test_nothing_to_crop_still_correct(x, build, reason):
    model = build()
    full = run(export(model), {"image": x})["saliency"]
    exported = export(model, roi=(1, 2, 6, 9))
    assert_window(run(exported, {"image": x})["saliency"], full[..., 2:9, 1:6])
    info = roi_info(exported)
    assert info["split"] is None and reason in info["reason"]


def test_whole_image_window_falls_back_to_the_plain_gradient(cnn):
    info = roi_info(export(cnn, roi=(0, 0, 16, 16)))
    assert info["split"] is None and "no split saves work" in info["reason"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"roi": (0, 0, 17, 16)}, "--roi 0,0,17,16: not a non-empty window"),
        ({"roi": (-1, 0, 4, 4)}, "--roi -1,0,4,4"),
        ({"roi": (5, 5, 5, 9)}, "--roi 5,5,5,9"),
        ({"roi": (6, 5, 4, 9)}, "--roi 6,5,4,9"),
        ({"roi": (16, 0, 17, 3)}, "inside the 16x16 image"),
        ({"roi_size": (17, 4)}, "--roi-size 17,4: must be between 1x1"),
        ({"roi_size": (4, 0)}, "--roi-size 4,0"),
        ({"roi": (0, 0, 4, 4), "roi_size": (4, 4)}, "--roi and --roi-size"),
        ({"roi": (0, 0, 4, 4), "roi_split": "p1"}, "--roi-split p1: not a tensor"),
        ({"roi": (0, 0, 4, 4), "roi_split": "logits"}, "candidates: c1, n1, r1, d1, r2, a1"),
    ],
)
def test_bad_windows_name_the_flag(cnn, options, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        export(cnn, **options)


def test_runtime_window_name_taken(cnn):
    with pytest.raises(InputError, match="already has a tensor named 'roi'"):
        export(cnn, roi_size=(4, 4), output_name="roi_used")


def test_cli_roi_flags(tmp_path, capsys, x):
    source, out = tmp_path / "cnn.onnx", tmp_path / "roi.onnx"
    onnx.save(nchw_cnn(seed=3), source)
    assert main(["export", str(source), "-o", str(out), "--roi", "2,3,9,10"]) == 0
    assert "roi: window 7x7, early layers on a" in capsys.readouterr().out
    assert run(onnx.load(out), {"image": x[:1]})["saliency"].shape == (1, 7, 7)
    assert main(["export", str(source), "-o", str(out), "--roi-size", "4,6"]) == 0
    feeds = {"image": x[:1], "roi": np.array([[1, 2]], np.int64)}
    assert run(onnx.load(out), feeds)["saliency"].shape == (1, 6, 4)
    assert main(["export", str(source), "-o", str(out), "--roi", "0,0,20,3"]) == 2
    assert "--roi 0,0,20,3" in capsys.readouterr().err


def test_receptive_fields_and_exactness_check(cnn):
    """Fields of the small CNN, and crops the check must reject: it is not vacuous."""
    prefix = Prefix.build(cnn.graph, TensorInfo(cnn), "image", "NCHW")
    assert prefix.fields["r1"][0] == Field(1, -1, 3)
    assert prefix.fields["a1"][0] == Field(2, -2, 5)  # 3x3 then 3x3 stride 2 (the Add's union)
    assert Field(2, -2, 5).meeting(3, 9, 8) == (1, 5)
    links = prefix.ancestors("a1")
    assert [link.out for link in links] == ["c1", "n1", "r1", "d1", "r2", "p1", "a1"]
    # a1[j] reads image pixels [2j - 2, 2j + 3), so a1[2..4] reads pixels 2..10
    assert prefix.verify(links, 0, "a1", 2, 4, 2, 9)
    assert prefix.verify(links, 0, "a1", 2, 4, 0, 16)
    assert not prefix.verify(links, 0, "a1", 2, 4, 2, 8)  # misses pixel 10
    assert not prefix.verify(links, 0, "a1", 2, 4, 4, 8)  # misses pixels 2..3
    assert not prefix.verify(links, 0, "a1", 2, 4, 1, 12)  # start off the stride-2 grid
    assert prefix.verify(links, 0, "a1", 5, 7, 8, 8)  # flush with the far border


# --- the zoo models --------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["mobilenet_v2", "efficientnet_lite0"])
def net(request):
    model = zoo.build(request.param, progress=False)
    x = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
    full = {m: run(export(model, m), {"image": x})["saliency"] for m in ("vanilla", "guided")}
    return model, x, full


@pytest.mark.slow
@pytest.mark.parametrize(
    "box",
    [
        (84, 84, 140, 140),
        (0, 0, 112, 112),
        (100, 30, 212, 142),
        (200, 210, 224, 224),
        (0, 150, 30, 224),
    ],
)
def test_zoo_fixed_window(net, box):
    model, x, full = net
    x0, y0, x1, y1 = box
    for method in ("vanilla", "guided", "gradxinput"):
        exported = export(model, method, roi=box)
        got = run(exported, {"image": x})["saliency"]
        expected = full.get(method, x * full["vanilla"])
        assert_window(got, window(expected, "NCHW", x0, y0, x1 - x0, y1 - y0))
        info = roi_info(exported)
        assert info["split"] is not None and info["crop"][0] * info["crop"][1] < 224 * 224


@pytest.mark.slow
def test_zoo_runtime_window(net):
    model, x, full = net
    exported = export(model, roi_size=(56, 72))
    assert roi_info(exported)["split"] is not None
    for asked in ([0, 0], [168, 152], [13, 77], [101, 5], [300, -8], [55, 150]):
        out = run(exported, {"image": x, "roi": np.array([asked], np.int64)})
        x0, y0 = out["roi_used"][0]
        assert (x0, y0) == (min(max(asked[0], 0), 168), min(max(asked[1], 0), 152))
        assert_window(out["saliency"], window(full["vanilla"], "NCHW", x0, y0, 56, 72))


@pytest.mark.slow
def test_zoo_uint8_hwc_input_with_runtime_target_and_window():
    """In-graph preprocessing (Cast, Sub, Div, Transpose) is part of the cropped prefix."""
    model = zoo.build("mobilenet_v2", input_kind="uint8-hwc", progress=False)
    x = np.random.default_rng(0).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    feeds = {"image": x, "target": np.array([3], np.int64)}
    full = run(export(model, target="input"), feeds)["saliency"]
    exported = export(model, target="input", roi_size=(64, 48))
    assert roi_info(exported)["split"] is not None
    for asked in ([0, 0], [160, 176], [37, 91]):
        out = run(exported, {**feeds, "roi": np.array([asked], np.int64)})
        assert_window(out["saliency"], window(full, "NHWC", *asked, 64, 48))
