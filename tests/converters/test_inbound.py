"""Models in: Keras, SavedModel, TFLite, PyTorch and ONNX -> ONNX, checked against their source
framework (outputs and input gradients from its own autograd), plus bad-input errors; .keras and
.tflite through ``edgesal convert`` and ``edgesal export``."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tensorflow as tf
import torch

from edgesal import converters, metadata
from edgesal.cli import main
from edgesal.converters.errors import ConversionError
from edgesal.errors import EdgesalError, ModelLoadError
from edgesal.export import ExportOptions, export_saliency
from edgesal.onnx_io import default_opset
from edgesal.runtimes.backends.tflite_meta import read_metadata
from tests.converters.tflite_harness import interpreter

RAW = {"reduce": "none", "normalize": "none"}


def run(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def gradient_map(model: onnx.ModelProto, target: str, feeds: dict) -> tuple[np.ndarray, ...]:
    """(scores, raw input gradient of ``target``) from edgesal's in-graph export."""
    sal = export_saliency(model, ExportOptions(method="vanilla", target=target, **RAW))
    session = ort.InferenceSession(sal.SerializeToString(), providers=["CPUExecutionProvider"])
    return tuple(session.run([sal.graph.output[0].name, "saliency"], feeds))


def keras_cnn():
    tf.keras.utils.set_random_seed(0)
    layers = tf.keras.layers
    model = tf.keras.Sequential(
        [
            tf.keras.Input((32, 32, 3), batch_size=1, name="image"),
            layers.Conv2D(8, 3, strides=2, padding="same"),
            layers.BatchNormalization(),
            layers.ReLU(6.0),
            layers.DepthwiseConv2D(3, padding="same"),
            layers.ReLU(),
            layers.MaxPooling2D(2),
            layers.Conv2D(12, 1),
            layers.GlobalAveragePooling2D(),
            layers.Dropout(0.2),
            layers.Dense(5),
        ]
    )
    bn = model.layers[1]  # non-trivial statistics so the BN folding is exercised
    bn.set_weights(
        [w + np.random.default_rng(1).uniform(0.1, 0.5, w.shape) for w in bn.get_weights()]
    )
    return model


def test_keras_round_trip(tmp_path):
    model = keras_cnn()
    path = tmp_path / "cnn.keras"
    model.save(path)
    onnx_model = converters.convert(path)
    ops = {n.op_type for n in onnx_model.graph.node}
    assert "BatchNormalization" not in ops and "Identity" not in ops, ops
    x = np.random.default_rng(0).uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
    (logits,) = run(onnx_model, {onnx_model.graph.input[0].name: x})
    expected = model(x, training=False).numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)
    k = int(expected.argmax())
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        score = model(xt, training=False)[0, k]
    want = tape.gradient(score, xt).numpy()
    scores, got = gradient_map(onnx_model, f"class:{k}", {onnx_model.graph.input[0].name: x})
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-5)  # the saliency model's
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5 * np.abs(want).max())
    assert converters.load_model_any(path).graph.input[0].name == onnx_model.graph.input[0].name


def test_saved_model_round_trip(tmp_path):
    model = keras_cnn()
    spec = tf.TensorSpec([1, 32, 32, 3], tf.float32, name="pixels")
    serve = tf.function(
        lambda pixels: {"scores": model(pixels, training=False)}, input_signature=[spec]
    )
    folder = tmp_path / "saved"
    tf.saved_model.save(
        model, str(folder), signatures={"serving_default": serve.get_concrete_function()}
    )
    onnx_model = converters.convert(folder)
    assert [i.name for i in onnx_model.graph.input] == ["pixels"]
    assert [o.name for o in onnx_model.graph.output] == ["scores"]
    x = np.random.default_rng(2).uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(
        run(onnx_model, {"pixels": x})[0], model(x).numpy(), rtol=1e-4, atol=1e-5
    )


def test_saved_model_without_serving_signature(tmp_path):
    module = tf.Module()
    module.v = tf.Variable(1.0)
    tf.saved_model.save(module, str(tmp_path / "nosig"))
    with pytest.raises(ConversionError, match="no 'serving_default' signature"):
        converters.convert(tmp_path / "nosig")


def tflite_of(model) -> bytes:
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def test_tflite_round_trip(tmp_path):
    model = keras_cnn()
    path = tmp_path / "cnn.tflite"
    path.write_bytes(tflite_of(model))
    onnx_model = converters.convert(path)
    assert onnx_model.metadata_props and "tflite:cnn.tflite" in {
        p.value for p in onnx_model.metadata_props
    }
    x = np.random.default_rng(3).uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
    got = run(onnx_model, {onnx_model.graph.input[0].name: x})[0]
    np.testing.assert_allclose(got, model(x).numpy(), rtol=1e-4, atol=1e-5)


def test_truncated_tflite(tmp_path):
    data = tflite_of(keras_cnn())
    for cut in (len(data) // 2, 40, 6):
        path = tmp_path / f"cut{cut}.tflite"
        path.write_bytes(data[:cut])
        with pytest.raises(ModelLoadError, match=f"cut{cut}.tflite"):
            converters.convert(path)


def test_tflite_with_custom_op(tmp_path):
    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def special(x):
        return tf.math.igamma(x, x + 2.0) + 1.0

    conv = tf.lite.TFLiteConverter.from_concrete_functions(
        [special.get_concrete_function()], special
    )
    conv.allow_custom_ops = True
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    path = tmp_path / "custom.tflite"
    path.write_bytes(conv.convert())
    with pytest.raises(ConversionError, match="CUSTOM:Igamma"):
        converters.convert(path)


class TorchCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=2, padding=1),
            torch.nn.BatchNorm2d(8),
            torch.nn.ReLU6(),
            torch.nn.Conv2d(8, 8, 3, padding=1, groups=8),
            torch.nn.ReLU(),
            torch.nn.AvgPool2d(2),
            torch.nn.Conv2d(8, 12, 1),
            torch.nn.Dropout(0.1),
        )
        self.head = torch.nn.Linear(12, 5)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


def test_torch_round_trip():
    torch.manual_seed(0)
    module = TorchCNN().eval()
    with torch.no_grad():
        module.features[1].running_mean.uniform_(-0.5, 0.5)
        module.features[1].running_var.uniform_(0.5, 2.0)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    onnx_model = converters.from_torch(module, x)
    assert "BatchNormalization" not in {n.op_type for n in onnx_model.graph.node}
    feeds = {"input": x.numpy()}
    expected = module(x)
    np.testing.assert_allclose(
        run(onnx_model, feeds)[0], expected.detach().numpy(), rtol=1e-4, atol=1e-5
    )
    k = int(expected.argmax())
    xg = x.clone().requires_grad_(True)
    module(xg)[0, k].backward()
    scores, got = gradient_map(onnx_model, f"class:{k}", feeds)
    np.testing.assert_allclose(scores, expected.detach().numpy(), rtol=1e-4, atol=1e-5)
    want = xg.grad.numpy()
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5 * np.abs(want).max())


def test_torch_errors():
    with pytest.raises(ConversionError, match="nn.Module"):
        converters.from_torch(lambda t: t, torch.zeros(1))


def test_onnx_passes_through_checked(tmp_path):
    x = np.random.default_rng(4).uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32)
    source = converters.from_torch(TorchCNN().eval(), torch.from_numpy(x))
    path = tmp_path / "model.onnx"
    onnx.save(source, path)
    again = converters.convert(path)
    np.testing.assert_allclose(run(again, {"input": x})[0], run(source, {"input": x})[0], rtol=1e-6)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(EdgesalError, match="model.onnx"):
        converters.convert(path)
    with pytest.raises(ModelLoadError, match="no such file"):
        converters.convert(tmp_path / "missing.tflite")


def test_saved_model_with_op_without_onnx_equivalent(tmp_path, capsys):
    """tf2onnx keeps Igamma under its TensorFlow name: refused, naming the op and its node."""
    module = tf.Module()

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32, name="x")])
    def special(x):
        return {"y": tf.math.igamma(x, x + 2.0) + 1.0}

    module.special = special
    folder = tmp_path / "igamma"
    tf.saved_model.save(
        module, str(folder), signatures={"serving_default": special.get_concrete_function()}
    )
    with pytest.raises(
        ConversionError,
        match=r"igamma: these operators have no ONNX equivalent: Igamma \(node '[^']*Igamma'\)$",
    ):
        converters.convert(folder)
    capsys.readouterr()
    assert main(["convert", str(folder), "-o", str(tmp_path / "igamma.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"edgesal: error: {folder}: these operators have no ONNX equivalent")
    assert "Traceback" not in err and not (tmp_path / "igamma.onnx").exists()


# --- the same formats through the command line


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory):
    """keras_cnn saved as .keras and as .tflite, with the Keras model itself."""
    model = keras_cnn()
    folder = tmp_path_factory.mktemp("cli_formats")
    model.save(folder / "cnn.keras")
    (folder / "cnn.tflite").write_bytes(tflite_of(model))
    return model, folder


@pytest.mark.parametrize("suffix", [".keras", ".tflite"])
def test_cli_convert(keras_files, tmp_path, capsys, suffix):
    model, folder = keras_files
    out = tmp_path / "cnn.onnx"
    assert main(["convert", str(folder / f"cnn{suffix}"), "-o", str(out)]) == 0
    assert "nodes, opset 17)" in capsys.readouterr().out
    converted = onnx.load(out)
    assert default_opset(converted) == 17
    assert metadata.read(converted)["source"] == f"{suffix[1:]}:cnn{suffix}"
    x = np.random.default_rng(5).uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
    got = run(converted, {converted.graph.input[0].name: x})[0]
    np.testing.assert_allclose(got, model(x).numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("suffix", [".keras", ".tflite"])
def test_cli_export_onnx(keras_files, tmp_path, capsys, suffix):
    """``edgesal export`` converts the model first: vanilla saliency with edgesal metadata."""
    _, folder = keras_files
    out = tmp_path / "cnn.sal.onnx"
    assert main(["export", str(folder / f"cnn{suffix}"), "-o", str(out)]) == 0
    assert "outputs: " in capsys.readouterr().out
    sal = onnx.load(out)
    assert "saliency" in [o.name for o in sal.graph.output]
    meta = metadata.read(sal)
    assert meta["method"] == "vanilla" and meta["layout"] == "NHWC"
    assert meta["outputs"]["saliency"] == "saliency"
    x = np.random.default_rng(6).uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
    session = ort.InferenceSession(out.read_bytes(), providers=["CPUExecutionProvider"])
    (saliency,) = session.run(["saliency"], {meta["input"]: x})
    assert saliency.shape == (1, 32, 32) and np.isclose(saliency.max(), 1.0)


def test_cli_export_tflite_from_tflite(keras_files, tmp_path, capsys):
    """.tflite in, .tflite out: one signature with a saliency output, edgesal metadata."""
    _, folder = keras_files
    out = tmp_path / "cnn.sal.tflite"
    assert main(["export", str(folder / "cnn.tflite"), "-o", str(out)]) == 0
    data = out.read_bytes()
    it = interpreter(data)
    signatures = it.get_signature_list()
    assert list(signatures) == ["serving_default"]
    assert "saliency" in signatures["serving_default"]["outputs"]
    meta = metadata.read(read_metadata(data))
    assert meta["method"] == "vanilla" and meta["layout"] == "NHWC"
    x = np.random.default_rng(7).uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
    (name,) = signatures["serving_default"]["inputs"]
    saliency = it.get_signature_runner()(**{name: x})["saliency"]
    assert saliency.shape == (1, 32, 32) and np.isclose(saliency.max(), 1.0)
