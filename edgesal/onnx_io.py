"""Loading and checking ONNX models from untrusted files, with errors that name the file."""

from __future__ import annotations

import math
from pathlib import Path

import onnx
from onnx import version_converter

from edgesal.errors import InputError, ModelLoadError

MAX_MODEL_BYTES = 2 * 1024**3  # protobuf's own limit; external data is not followed
MIN_OPSET = 13
# strings vary in size; 4-bit types pack two elements per stored byte
_UNCOUNTED = {
    onnx.TensorProto.STRING,
    onnx.TensorProto.UNDEFINED,
    *(
        getattr(onnx.TensorProto, n)
        for n in ("INT4", "UINT4", "FLOAT4E2M1")
        if hasattr(onnx.TensorProto, n)
    ),
}


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
    check_tensor_sizes(model, str(path))
    return model


def check_tensor_sizes(model: onnx.ModelProto, where: str = "model") -> None:
    """Each stored tensor (initializers, tensor attributes) holds prod(dims) elements: the checker
    lets ``dims=[]`` with 12 bytes of data through, and numpy then fails deep inside the export
    (found by tests/fuzz). External data is not followed, so it is not counted here."""
    tensors = list(model.graph.initializer)
    tensors += [a.t for n in model.graph.node for a in n.attribute if a.HasField("t")]
    for tensor in tensors:
        if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.data_type in _UNCOUNTED:
            continue
        count = math.prod(tensor.dims) if all(d >= 0 for d in tensor.dims) else -1
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
        if tensor.HasField("raw_data"):
            stored = len(tensor.raw_data) / dtype.itemsize
        else:
            field = onnx.helper.tensor_dtype_to_field(tensor.data_type)
            stored = len(getattr(tensor, field)) / (2 if dtype.kind == "c" else 1)
        if stored != count:
            raise ModelLoadError(
                f"{where}: tensor '{tensor.name}' has dims {list(tensor.dims)} but stores "
                f"{stored:g} elements"
            )


def check(model: onnx.ModelProto, where: str = "model") -> None:
    """onnx.checker in full mode; failures become ModelLoadError naming ``where``."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except UnicodeDecodeError as exc:  # a string field that is not UTF-8
        raise ModelLoadError(f"{where}: the ONNX model has a string that is not UTF-8") from exc
    except Exception as exc:  # ValidationError, InferenceError, ValueError (unknown data type)...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
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


def at_opset(model: onnx.ModelProto, opset: int, where: str = "model") -> onnx.ModelProto:
    """``model`` with default-domain opset ``opset``: returned as is when already there, else
    upgraded by the ONNX version converter (IR version raised to what the opset needs) and checked.

    A downgrade, a target below MIN_OPSET or beyond the installed onnx, and a conversion the
    version converter cannot do raise InputError naming ``where`` and both opsets.
    """
    current = default_opset(model)
    if opset == current and opset >= MIN_OPSET:
        return model
    newest = onnx.defs.onnx_opset_version()
    refusal: str | None
    if opset < current:
        refusal = f"converting down is not supported (ask for opset {current} or newer)"
    elif opset < MIN_OPSET:
        refusal = f"edgesal needs opset {MIN_OPSET} or newer"
    elif opset > newest:
        refusal = f"the installed onnx {onnx.__version__} knows opsets up to {newest}"
    else:
        unknown = [
            f"{n.op_type} (node '{n.name or n.output[0]}')"
            for n in model.graph.node
            if n.domain in ("", "ai.onnx") and not onnx.defs.has(n.op_type)
        ]
        refusal = f"operators unknown to onnx: {', '.join(unknown)}" if unknown else None
    prefix = f"{where}: cannot convert the model from opset {current} to opset {opset}"
    if refusal:
        raise InputError(f"{prefix}: {refusal}")
    try:
        converted = version_converter.convert_version(model, opset)
        needed = onnx.helper.find_min_ir_version_for(
            list(converted.opset_import), ignore_unknown=True
        )
        converted.ir_version = max(converted.ir_version, needed)
        onnx.checker.check_model(converted, full_check=True)
    except Exception as exc:  # the converter raises RuntimeError("...Assertion `...` failed: ...")
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        raise InputError(f"{prefix}: {first.rpartition('failed: ')[2]}") from exc
    return converted
