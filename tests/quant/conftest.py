"""Fixtures for the quantization tests: a tiny saliency model and folders of real photos."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from edgesal import metadata
from edgesal.export import ExportOptions, export_saliency
from edgesal.quant.images import builtin_photos
from tests.models import nchw_cnn

SIZE = 16
PHOTOS = (
    "astronaut", "chelsea", "coffee", "rocket", "camera", "retina", "immunohistochemistry",
    "hubble_deep_field",
)  # fmt: skip


def tiny_classifier() -> onnx.ModelProto:
    """The tests' tiny MobileNet-like CNN with the preprocessing metadata zoo models carry."""
    model = nchw_cnn(classes=5)
    pre = metadata.Preprocess(size=[SIZE, SIZE], mean=[0.5] * 3, std=[0.25] * 3)
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
