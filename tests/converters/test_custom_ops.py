"""TFLite custom operators lowered on import (issue 13 part 2), one test per table entry.

``Convolution2DTransposeBias``: two references. (1) The TFLite interpreter: ai-edge-litert's
default XNNPACK delegate resolves MediaPipe's custom op (its plain kernels do not), except where
XNNPACK refuses the geometry (a stride larger than the kernel). (2) The op's documented semantics
(mediapipe/util/tflite/operations/transpose_conv_bias.cc) computed independently in numpy, for
every case: the output starts at the bias and every input pixel scatters ``x * w`` onto the output
window at ``in * stride - pad // 2``, cropped to ``stride * (in - 1) + k - pad``. The test .tflite
files are written with the project's flatbuffer writer (converters/tflite/schema.py).
"""

from __future__ import annotations

import struct

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from edgesal import converters, zoo
from edgesal.converters.custom_ops import LOWERINGS
from edgesal.converters.errors import ConversionError
from edgesal.converters.tflite.schema import FlatModel, Operator, Tensor
from edgesal.export import ExportOptions, export_saliency
from edgesal.zoo.weights import WheelFile, fetch
from tests.converters.tflite_harness import interpreter

SAME, VALID = 1, 2  # TfLitePadding
F32 = np.dtype(np.float32)


def _total_pad(size: int, kernel: int, stride: int, padding: int) -> int:
    return max(0, kernel - (size - 1) % stride - 1) if padding == SAME else 0


def reference(x, w, b, stride: tuple[int, int], padding: int) -> np.ndarray:
    """transpose_conv_bias.cc by its loops: x NHWC, w OHWI, b [O]; stride = (h, w)."""
    n, height, width, _ = x.shape
    out_c, kh, kw, _ = w.shape
    pad_h = _total_pad(height, kh, stride[0], padding)
    pad_w = _total_pad(width, kw, stride[1], padding)
    out_h, out_w = stride[0] * (height - 1) + kh - pad_h, stride[1] * (width - 1) + kw - pad_w
    y = np.tile(b.astype(np.float64), (n, out_h, out_w, 1))
    for iy in range(height):
        for ix in range(width):
            oy0, ox0 = iy * stride[0] - pad_h // 2, ix * stride[1] - pad_w // 2
            for fy in range(kh):
                for fx in range(kw):
                    oy, ox = oy0 + fy, ox0 + fx
                    if 0 <= oy < out_h and 0 <= ox < out_w:
                        y[:, oy, ox, :] += x[:, iy, ix, :] @ w[:, fy, fx, :].T
    return y


def transpose_conv_bias_tflite(x_shape, w, b, stride, padding, code="Convolution2DTransposeBias"):
    """A .tflite holding the custom op followed by a builtin LOGISTIC (so both kinds mix)."""
    out = reference(np.zeros(x_shape, np.float32), w, b, stride, padding).shape
    options = struct.pack("<iii", padding, stride[1], stride[0])  # padding, stride_w, stride_h
    model = FlatModel(
        tensors=[
            Tensor("x", tuple(x_shape), F32),
            Tensor("w", w.shape, F32, w),
            Tensor("b", b.shape, F32, b),
            Tensor("up", out, F32),
            Tensor("y", out, F32),
        ],
        operators=[
            Operator("CUSTOM", [0, 1, 2], [3], custom_code=code, custom_options=options),
            Operator("LOGISTIC", [3], [4]),
        ],
        inputs=[0],
        outputs=[4],
    )
    return model.serialize()


def _interpreted(data: bytes, x: np.ndarray) -> np.ndarray:
    it = interpreter(data)
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


@pytest.mark.parametrize(
    ("x_shape", "kernel", "stride", "padding", "interpreted"),
    [
        ((1, 4, 5, 3), (3, 3), (2, 2), SAME, True),  # the selfie segmenter's kind
        ((2, 3, 3, 4), (4, 4), (2, 2), VALID, True),
        ((1, 6, 6, 8), (2, 2), (2, 2), SAME, True),  # k = s: no padding at all
        ((1, 5, 4, 2), (3, 2), (1, 3), SAME, False),  # stride 3 > kernel 2: XNNPACK refuses
    ],
)
def test_convolution2d_transpose_bias_matches_the_interpreter_and_its_definition(
    tmp_path, x_shape, kernel, stride, padding, interpreted
):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, *kernel, x_shape[-1])).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    path = tmp_path / "tcb.tflite"
    data = transpose_conv_bias_tflite(x_shape, w, b, stride, padding)
    path.write_bytes(data)
    model = converters.convert(path)
    assert not any(n.op_type.startswith("TFL_") for n in model.graph.node)
    x = rng.standard_normal(x_shape).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {model.graph.input[0].name: x})[0]
    expected = 1.0 / (1.0 + np.exp(-reference(x.astype(np.float64), w, b, stride, padding)))
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    if interpreted:
        np.testing.assert_allclose(got, _interpreted(data, x), atol=1e-4, rtol=0)
    else:
        with pytest.raises(RuntimeError, match="Convolution2DTransposeBias"):
            interpreter(data)


def test_lowered_model_exports_saliency(tmp_path):
    """The lowered graph is plain ONNX: a saliency export of it works and has the input's grid."""
    rng = np.random.default_rng(2)
    w, b = rng.standard_normal((2, 3, 3, 3)).astype(np.float32), np.zeros(2, np.float32)
    path = tmp_path / "tcb.tflite"
    path.write_bytes(transpose_conv_bias_tflite((1, 4, 4, 3), w, b, (2, 2), SAME))
    model = converters.convert(path)
    exported = export_saliency(model, ExportOptions(target="output:y:sum"))
    session = ort.InferenceSession(exported.SerializeToString(), providers=["CPUExecutionProvider"])
    x = rng.standard_normal((1, 4, 4, 3)).astype(np.float32)
    saliency = session.run(["saliency"], {model.graph.input[0].name: x})[0]
    assert saliency.shape == (1, 4, 4) and np.isfinite(saliency).all() and saliency.max() == 1


def test_other_custom_ops_stay_an_error_naming_them_and_their_nodes(tmp_path):
    rng = np.random.default_rng(3)
    w, b = rng.standard_normal((2, 3, 3, 3)).astype(np.float32), np.zeros(2, np.float32)
    path = tmp_path / "fancy.tflite"
    path.write_bytes(transpose_conv_bias_tflite((1, 4, 4, 3), w, b, (2, 2), SAME, "FancyUpsample"))
    with pytest.raises(ConversionError) as caught:
        converters.convert(path)
    message = str(caught.value)
    assert "CUSTOM:FancyUpsample (node 'up')" in message
    assert f"lowered on import: {', '.join(sorted(LOWERINGS))}" in message


def test_bad_options_are_named(tmp_path):
    rng = np.random.default_rng(4)
    w, b = rng.standard_normal((2, 3, 3, 3)).astype(np.float32), np.zeros(2, np.float32)
    data = transpose_conv_bias_tflite((1, 4, 4, 3), w, b, (2, 2), SAME)
    options = struct.pack("<iii", SAME, 2, 2)
    path = tmp_path / "bad.tflite"
    path.write_bytes(data.replace(options, struct.pack("<iii", 7, 2, 2)))
    with pytest.raises(ConversionError, match=r"Convolution2DTransposeBias node 'up'.*padding=7"):
        converters.convert(path)


SELFIE = WheelFile(
    requirement="mediapipe==0.10.14",
    member="mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
    sha256="9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c",
)


@pytest.mark.slow
def test_mediapipe_selfie_segmenter_converts_and_matches_the_interpreter():
    """The published model that ships the op (from the mediapipe wheel on PyPI): the converted
    graph equals LiteRT on a photo, and a saliency export of the person mask works."""
    path = fetch(SELFIE, progress=False)
    model = converters.convert(path)
    assert "ConvTranspose" in {n.op_type for n in model.graph.node}
    photo = cv2.resize(zoo.photos()["astronaut"], (256, 256), interpolation=cv2.INTER_AREA)
    x = (photo.astype(np.float32) / 255.0)[None]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in model.graph.input]
    got = session.run(None, {name: x})[0]
    np.testing.assert_allclose(got, _interpreted(path.read_bytes(), x), atol=1e-4, rtol=0)
    mask = model.graph.output[0].name
    exported = export_saliency(model, ExportOptions(target=f"output:{mask}:mean"))
    saliency = ort.InferenceSession(
        exported.SerializeToString(), providers=["CPUExecutionProvider"]
    ).run(["saliency"], {name: x})[0]
    assert saliency.shape == (1, 256, 256) and saliency.max() == pytest.approx(1.0)
