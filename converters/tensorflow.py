"""TensorFlow formats -> ONNX through tf2onnx: .tflite files, SavedModel folders, .keras files.

TensorFlow and tf2onnx are imported here only (extra ``tf``), so ``import converters`` stays
light. Models keep their NHWC input; ``edgesal export`` detects the layout.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path

import onnx

from edgesal.converters.custom_ops import (
    lower_custom_ops,
    read_custom_ops,
    refuse_unlowered,
    tf2onnx_handlers,
)
from edgesal.converters.errors import ConversionError, import_extra
from edgesal.converters.formats import read_tflite
from edgesal.errors import ModelLoadError

SERVING = "serving_default"


def _import_tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    feature = "converting TensorFlow formats"
    return import_extra("tensorflow", feature), import_extra("tf2onnx", feature)


def _quiet():
    """tf2onnx logs every rewrite; keep stdout/stderr for errors only."""
    return contextlib.redirect_stdout(io.StringIO())


class _RawCustomOptions(logging.Filter):
    """Drops tf2onnx's warning that custom-op options are not flexbuffers: MediaPipe's are raw
    structs, which :mod:`edgesal.converters.custom_ops` reads itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Could not parse attributes for custom op" not in record.getMessage()


@contextlib.contextmanager
def _raw_custom_options_expected():
    logger, quiet = logging.getLogger("tf2onnx.tflite_utils"), _RawCustomOptions()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def from_tflite(path: str | Path, opset: int) -> onnx.ModelProto:
    """A .tflite file (checked first: truncation, custom ops) converted by tf2onnx; custom ops
    with a lowering (:mod:`edgesal.converters.custom_ops`) are replaced by their composition."""
    path = Path(path)
    custom = read_custom_ops(read_tflite(path))
    refuse_unlowered(path, custom)
    _, tf2onnx = _import_tf()
    with _quiet(), _raw_custom_options_expected():
        try:
            proto, _ = tf2onnx.convert.from_tflite(
                str(path), opset=opset, custom_op_handlers=tf2onnx_handlers(custom)
            )
        except Exception as exc:
            raise ConversionError(f"{path}: tf2onnx could not convert the model: {exc}") from exc
    lower_custom_ops(proto, custom, path)
    return proto


def from_saved_model(path: str | Path, opset: int, signature: str = SERVING) -> onnx.ModelProto:
    """The ``signature`` function of a SavedModel folder, inputs named after its arguments."""
    path = Path(path)
    tf, tf2onnx = _import_tf()
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:
        raise ModelLoadError(f"{path}: TensorFlow cannot load the SavedModel: {exc}") from exc
    signatures = dict(loaded.signatures)
    if signature not in signatures:
        found = ", ".join(signatures) or "none"
        raise ConversionError(
            f"{path}: the SavedModel has no '{signature}' signature (signatures: {found}); "
            "save it with signatures={'serving_default': fn.get_concrete_function(spec)}"
        )
    function = signatures[signature]
    _, kwargs = function.structured_input_signature
    names = sorted(kwargs)
    specs = [tf.TensorSpec(kwargs[n].shape, kwargs[n].dtype, name=n) for n in names]

    @tf.function(input_signature=specs)
    def call(*args):
        return function(**dict(zip(names, args, strict=True)))

    return _from_function(tf2onnx, call, specs, opset, path)


def from_keras(path: str | Path, opset: int) -> onnx.ModelProto:
    """A .keras file: the model's call with its declared input shapes."""
    path = Path(path)
    tf, tf2onnx = _import_tf()
    try:
        model = tf.keras.models.load_model(str(path), compile=False)
    except Exception as exc:
        raise ModelLoadError(f"{path}: Keras cannot load the model: {exc}") from exc
    return keras_to_onnx(model, opset, str(path))


def keras_to_onnx(model, opset: int, where: str = "keras model") -> onnx.ModelProto:
    """An in-memory Keras model through a tf.function over its inputs."""
    tf, tf2onnx = _import_tf()
    specs = [
        tf.TensorSpec(t.shape, t.dtype, name=(t.name.split(":")[0] or f"input_{i}"))
        for i, t in enumerate(model.inputs)
    ]

    @tf.function(input_signature=specs)
    def call(*args):
        return model(list(args) if len(args) > 1 else args[0], training=False)

    return _from_function(tf2onnx, call, specs, opset, where)


def _from_function(tf2onnx, function, specs, opset: int, where) -> onnx.ModelProto:
    with _quiet():
        try:
            proto, _ = tf2onnx.convert.from_function(function, input_signature=specs, opset=opset)
        except Exception as exc:
            raise ConversionError(f"{where}: tf2onnx could not convert the model: {exc}") from exc
    return proto
