"""Fixtures for the quantization tests: a tiny saliency model, folders of real photos, and the
zoo models quantized once per session (shared by the ONNX and TFLite zoo tests)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from edgesal import metadata, zoo
from edgesal.export import ExportOptions, export_saliency
from edgesal.methods import MethodOptions
from edgesal.quant import QuantOptions, SearchOptions, load_split, quantize
from edgesal.quant.images import builtin_photos
from edgesal.runtimes.contract import Preprocess
from tests.models import nchw_cnn

SIZE = 16
PHOTOS = (
    "astronaut", "chelsea", "coffee", "rocket", "camera", "retina", "immunohistochemistry",
    "hubble_deep_field",
)  # fmt: skip


def tiny_classifier() -> onnx.ModelProto:
    """The tests' tiny MobileNet-like CNN with the preprocessing metadata zoo models carry."""
    model = nchw_cnn(classes=5)
    pre = Preprocess(size=[SIZE, SIZE], mean=[0.5] * 3, std=[0.25] * 3)
    metadata.write(model, {"preprocess": pre.to_json(), "input": "image", "layout": "NCHW"})
    return model


@pytest.fixture(scope="session")
def tiny_saliency() -> dict[str, onnx.ModelProto]:
    """``{method: saliency model}`` of the tiny CNN for vanilla, gradcam and integrated."""
    model = tiny_classifier()
    return {
        method: export_saliency(model, ExportOptions(method=method))
        for method in ("vanilla", "gradcam", "integrated")
    }


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory) -> Path:
    """Eight real photos, shrunk to 48 px wide, as PNG files."""
    folder = tmp_path_factory.mktemp("photos")
    for sample in builtin_photos(PHOTOS):
        h, w = sample.rgb.shape[:2]
        small = cv2.resize(sample.rgb, (48, max(8, round(48 * h / w))), cv2.INTER_AREA)
        cv2.imwrite(str(folder / f"{sample.name}.png"), cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    return folder


def random_maps(seed: int, shape=(32, 32)) -> tuple[np.ndarray, np.ndarray]:
    """A map and a noisy, partly tied copy of it."""
    rng = np.random.default_rng(seed)
    a = rng.random(shape)
    b = a + 0.2 * rng.random(shape)
    b[b < 0.4] = 0.0
    return a, b


# Lighter than the CLI defaults (fewer calibration samples and search evaluations) to keep CI
# time modest; integrated gradients runs 8 path points per image, so it gets the fewest.
ZOO_OPTIONS = {
    "vanilla": QuantOptions(
        max_calibration=16, latency_runs=0, search=SearchOptions(max_evaluations=24)
    ),
    "gradcam": QuantOptions(tune=4, max_calibration=16, latency_runs=0),
    "integrated": QuantOptions(
        tune=3, max_calibration=8, latency_runs=0, search=SearchOptions(4, max_evaluations=12)
    ),
}


@pytest.fixture(scope="session")
def zoo_split():
    """The built-in photos: 7 calibration photos (+3 flipped/cropped copies each), 4 held out."""
    return load_split("builtin", augment=3)


@pytest.fixture(scope="session")
def zoo_quantized(zoo_split):
    """``get(name, method)`` -> (fp32 saliency model, QuantResult), computed once per session."""
    cache = {}

    def get(name: str, method: str):
        if (name, method) not in cache:
            forward = zoo.build(name, progress=False)
            fp32 = export_saliency(
                forward, ExportOptions(method=method, params=MethodOptions(steps=8))
            )
            cache[(name, method)] = (fp32, quantize(fp32, ZOO_OPTIONS[method], zoo_split))
        return cache[(name, method)]

    return get
