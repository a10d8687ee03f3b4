"""One picture, one tensor: the device, evaluation and quantization calibration feed the same
bits, because they all go through :mod:`edgesal.runtimes.contract`."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgesal.eval.audit import crops_of
from edgesal.eval.model import SaliencyRunner, contract, pixels_of
from edgesal.eval.records import device_crop, frame_images
from edgesal.imaging import read_folder
from edgesal.quant.images import CalibrationWarning, load_split, model_inputs
from edgesal.runtimes.contract import Preprocess, Preprocessor, image_tensor
from edgesal.runtimes.sources import FolderCapture

PREPROCESS = {
    "shrink, crop, float NCHW": Preprocess(
        size=(48, 40), resize_shorter=56, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
    ),
    "whole frame, BGR, NHWC": Preprocess(size=(32, 32), color="BGR", layout="NHWC"),
    "enlarge, pixel scale 1": Preprocess(size=(160, 200), pixel_scale=1.0, mean=(0.5,), std=(2,)),
    "uint8 in graph": Preprocess(size=(40, 40), resize_shorter=44, in_graph=True, dtype="uint8"),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Two photos as files: a textured colour one and a grey one (odd sizes, not the model's)."""
    root = tmp_path_factory.mktemp("frames")
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:97, 0:131]
    colour = np.stack([(xx * 2) % 256, (yy * 3) % 256, (xx + yy) % 256], -1).astype(np.uint8)
    colour = cv2.add(colour, rng.integers(0, 40, colour.shape, dtype=np.uint8))
    cv2.imwrite(str(root / "a_colour.png"), colour)
    cv2.imwrite(str(root / "b_grey.png"), rng.integers(0, 256, (120, 90), dtype=np.uint8))
    return root


def device_tensors(folder: Path, pre: Preprocess) -> tuple[list[np.ndarray], list]:
    """What ``edgesal run --source FOLDER`` feeds: the device's folder reader, its Preprocessor."""
    capture, prep, tensors, regions = FolderCapture(folder), Preprocessor(pre), [], []
    while capture.position < len(capture.paths):
        ok, frame = capture.read()
        assert ok
        tensor, _, region = prep(frame)
        tensors.append(tensor)
        regions.append(region)
    return tensors, regions


def eval_tensors(folder: Path, pre: Preprocess) -> list[np.ndarray]:
    """What ``edgesal eval --images FOLDER`` feeds: its crops, pixels and the runner's layout."""
    shape = (1, 3, *pre.size) if pre.layout == "NCHW" else (1, *pre.size, 3)
    props = {
        "edgesal.preprocess": pre.to_json(),
        "edgesal.layout": pre.layout,
        "edgesal.outputs": json.dumps({"scores": "logits", "saliency": "saliency"}),
    }
    spec = contract(props, {"image": (shape, pre.dtype)}, {"logits": (1, 2), "saliency": None}, "m")
    assert spec.preprocess == pre
    runner = SaliencyRunner()
    runner.spec = spec
    crops = crops_of(read_folder(folder), spec)
    return [runner.to_model(pixels_of(c, pre)[None]) for c in crops.values()]


@pytest.mark.parametrize("pre", PREPROCESS.values(), ids=PREPROCESS.keys())
def test_device_eval_and_calibration_feed_identical_tensors(folder, pre):
    device, regions = device_tensors(folder, pre)
    evaluation = eval_tensors(folder, pre)
    split = load_split(folder, validation=0.5, augment=0)
    samples = sorted(split.calibration + split.validation, key=lambda s: s.name)
    with pytest.warns(CalibrationWarning, match="resized"):
        calibration = model_inputs(samples, pre)
    records = [
        pixels_of(device_crop(rgb, [r.x, r.y, r.w, r.h], pre.size), pre)
        for (_, rgb), r in zip(frame_images(folder), regions, strict=True)
    ]
    assert len(device) == len(evaluation) == len(calibration) == len(records) == 2
    for d, e, c, r in zip(device, evaluation, calibration, records, strict=True):
        assert d.dtype == e.dtype == c.dtype and d.shape == e.shape == c.shape
        assert d.tobytes() == e.tobytes() == c.tobytes()  # bit-identical, not close
        laid = r.transpose(2, 0, 1) if pre.layout == "NCHW" else r
        assert laid.astype(d.dtype).tobytes() == d[0].tobytes()


def test_the_tensor_is_the_documented_formula(folder):
    """Independent of the code under test: crop and resize by hand, then (p / s - mean) / std."""
    pre = PREPROCESS["shrink, crop, float NCHW"]
    rgb = read_folder(folder)["a_colour.png"]  # 131 x 97: shorter side 97 -> 56 keeps 83 x 69
    h, w = round(48 * 97 / 56), round(40 * 97 / 56)
    y, x = (97 - h) // 2, (131 - w) // 2
    cut = cv2.resize(rgb[y : y + h, x : x + w], (40, 48), interpolation=cv2.INTER_AREA)
    want = (cut / 255.0 - np.array(pre.mean)) / np.array(pre.std)
    got = image_tensor(rgb, pre)[0].transpose(1, 2, 0)
    np.testing.assert_allclose(got, want, atol=2e-6)
