"""Loading and checking ONNX models from untrusted files, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import version_converter

from edgesal.errors import ModelLoadError

MAX_MODEL_BYTES = 2 * 1024**3  # protobuf's own limit; external data is not followed
MIN_OPSET = 13


TFLITE_IDENTIFIER = b"TFL3"  # the flatbuffer file identifier, bytes 4..8


def is_tflite(data: bytes) -> bool:
    """Whether ``data`` (a file's first 8 bytes suffice) is a TFLite flatbuffer."""
    return data[4:8] == TFLITE_IDENTIFIER


def load_model(path: str | Path) -> onnx.ModelProto:
    """Parse an ONNX file; a missing, oversized, corrupt or non-ONNX file raises ModelLoadError."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such file")
    size = path.stat().st_size
    if size > MAX_MODEL_BYTES:
        raise ModelLoadError(f"{path}: {size} bytes is larger than the 2 GiB ONNX limit")
    data = path.read_bytes()
    if is_tflite(data):
        raise ModelLoadError(f"{path}: this is a TFLite flatbuffer, not an ONNX model")
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # protobuf raises DecodeError or RuntimeError by version
        raise ModelLoadError(
            f"{path}: not a readable ONNX model ({exc.__class__.__name__})"
        ) from exc
    if not model.graph.node or not model.opset_import:
        raise ModelLoadError(f"{path}: not an ONNX model (no graph nodes or opset imports)")
    check(model, str(path))
    return model


def check(model: onnx.ModelProto, where: str = "model") -> None:
    """onnx.checker in full mode; failures become ModelLoadError naming ``where``."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelLoadError(f"{where}: the ONNX model is invalid: {first}") from exc


def default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    raise ModelLoadError("the model imports no default-domain opset")


def upgraded(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model at opset >= 13 (the gradient rules' floor); converted only when older."""
    if default_opset(model) >= MIN_OPSET:
        return model
    try:
        return version_converter.convert_version(model, MIN_OPSET)
    except Exception as exc:
        raise ModelLoadError(
            f"cannot upgrade the model from opset {default_opset(model)} to {MIN_OPSET}: {exc}"
        ) from exc
